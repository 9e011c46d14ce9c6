"""The receiver on its own: real decoder, real render process, frames fed as the transport delivers them."""

import asyncio
import time
from pathlib import Path

import numpy as np

from nerfconf.avatar.bundle import AvatarBundle
from nerfconf.codec.encoder import ParamEncoder
from nerfconf.net.config import ReceivedFrame
from nerfconf.pipeline.receiver import Receiver
from nerfconf.pipeline.render_worker import RenderWorker
from nerfconf.tracks import ParamTrack
from nerfconf.types import FaceParams

SAMPLE = Path(__file__).resolve().parents[2] / "avatars" / "sample"


class ClosingWindow:
    """A display the user closes after ``after`` frames, as WindowSink reports a closed window."""

    controls_view = False

    def __init__(self, after: int) -> None:
        self.after = after
        self.frames: list[np.ndarray] = []
        self.closed = False

    def write(self, image: np.ndarray) -> None:
        self.frames.append(image)
        self.closed = len(self.frames) >= self.after


def test_closing_the_window_hangs_up_the_call():
    bundle = AvatarBundle.load(SAMPLE)
    track = ParamTrack.load(SAMPLE / "demo_track.npz")
    encoder = ParamEncoder(bundle.codec)
    window = ClosingWindow(after=3)

    async def call() -> tuple:
        frames: asyncio.Queue = asyncio.Queue()

        async def feed() -> None:
            # a sender that would go on for 30 s at 20 fps
            for i in range(600):
                p = track.params(i % len(track.values))
                frame = encoder.encode(FaceParams(p.expression, p.rotation, p.translation, True, i / 20, i))
                await frames.put(ReceivedFrame(frame.seq, frame.data, time.monotonic()))
                await asyncio.sleep(0.05)

        until = asyncio.Event()
        feeder = asyncio.create_task(feed())
        with RenderWorker(SAMPLE, resolution=24) as worker:
            receiver = Receiver(worker, bundle.codec, sinks=[window])
            t0 = time.monotonic()
            stats = await asyncio.wait_for(receiver.run(frames.get, until=until), 60)
            took = time.monotonic() - t0
        feeder.cancel()
        return stats, until.is_set(), took

    stats, hung_up, took = asyncio.run(call())
    assert stats.window_closed and hung_up
    assert len(window.frames) >= 3 and stats.displayed >= 3
    assert took < 20  # long before the sender's 30 s were over


def test_the_stats_count_fresh_frames_and_the_freeze_a_lost_burst_leaves():
    bundle = AvatarBundle.load(SAMPLE)
    track = ParamTrack.load(SAMPLE / "demo_track.npz")
    encoder = ParamEncoder(bundle.codec)
    window = ClosingWindow(after=10_000)
    lost = range(30, 38)  # 400 ms of frames that never arrive

    async def call():
        frames: asyncio.Queue = asyncio.Queue()
        until = asyncio.Event()

        async def feed() -> None:
            for i in range(60):
                p = track.params(i % len(track.values))
                frame = encoder.encode(FaceParams(p.expression, p.rotation, p.translation, True, i / 20, i))
                if i not in lost:
                    await frames.put(ReceivedFrame(frame.seq, frame.data, time.monotonic()))
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
            until.set()

        feeder = asyncio.create_task(feed())
        with RenderWorker(SAMPLE, resolution=24) as worker:
            stats = await asyncio.wait_for(Receiver(worker, bundle.codec, sinks=[window]).run(frames.get, until=until), 60)
        await feeder
        return stats

    stats = asyncio.run(call())
    assert 0 < stats.fresh_displayed <= 60 - len(lost) <= stats.slots <= 62
    # the second after the sender stopped conceals frames never sent: played, but not counted as slots
    assert stats.tail_slots >= 10
    assert stats.fresh_displayed < stats.displayed == len(window.frames)
    # the burst: at least its 8 frame periods with nothing fresh on screen, and at most until the
    # encoder's next periodic I-frame (no feedback asks for one here), counted once
    assert 250 <= stats.longest_freeze_ms <= 2000, stats.longest_freeze_ms
    assert 0 < stats.render_ms_p50 <= stats.render_ms_p95
    assert stats.resolutions == {24: stats.rendered} and stats.resolution_changes == 0
