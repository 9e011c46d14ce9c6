"""The receiver in video mode: Receive -> Reassemble -> Decode -> Display, with its feedback.

Packets are reassembled and decoded on the asyncio loop (a 256 px frame
decodes in well under a millisecond); a display thread scales each picture to
the display size and writes it to the sinks, as the avatar receiver's does.
Pictures are shown as soon as they decode: there is no jitter buffer in front
of the decoder yet, so network jitter shows as uneven motion rather than delay.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from nerfconf.codec.frame import TIMESTAMP_MODULO
from nerfconf.net.messages import Feedback, VideoCodec, VideoFeedback
from nerfconf.pipeline.fifo import DropOldest
from nerfconf.video.receive import Picture, VideoReceiveSession

#: how often timeouts, NACK retries and loss reports are looked at
POLL_SECONDS = 0.01


@dataclass
class VideoReceiverStats:
    displayed: int = 0
    #: the longest wait between two pictures on screen beyond the sender's frame interval (the
    #: rung's frame rate, read from consecutive frames' timestamps)
    longest_freeze_ms: float = 0.0
    #: capture to display, read from the sender's timestamps: meaningful only when both peers run on
    #: one host (one monotonic clock), as in the tests and benches
    same_host_latency_ms_p50: float | None = None
    display_dropped: int = 0
    window_closed: bool = False
    #: what the video session counted: packets, frames, losses, keyframe requests, decode times
    session: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ShownPicture:
    frame_no: int
    image: np.ndarray
    t_display: float


class VideoReceiver:
    def __init__(self, sinks: list, *, display_size: int, fps: float = 20.0,
                 codecs: frozenset[VideoCodec] = frozenset({VideoCodec.H264}),
                 feedback: Callable[[Feedback], None] | None = None,
                 video_feedback: Callable[[VideoFeedback], None] | None = None, record: bool = False) -> None:
        self.sinks = sinks
        self.display_size = display_size
        self.fps = fps
        self.session = VideoReceiveSession(codecs)
        self.feedback = feedback
        self.video_feedback = video_feedback
        self.record = record
        self.shown: list[ShownPicture] = []
        self.stats = VideoReceiverStats()
        self._display: DropOldest[Picture] = DropOldest(4)
        self._latency_ms: list[float] = []

    async def run(self, recv: Callable[[], Awaitable], *, until: asyncio.Event) -> VideoReceiverStats:
        """Runs until ``until`` is set, the peer hangs up (which sets it) or a window closes."""
        thread = threading.Thread(target=self._show, name="nerfconf-video-display", daemon=True)
        thread.start()
        tasks = [asyncio.create_task(self._receive(recv, until)), asyncio.create_task(self._poll()),
                 asyncio.create_task(self._watch_window())]
        waiter = asyncio.create_task(until.wait())
        try:
            await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            until.set()
            for task in (waiter, *tasks):
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(waiter, return_exceptions=True)
            self._display.close()
            await asyncio.to_thread(thread.join, 5.0)
            self.stats.display_dropped = self._display.dropped
            self.stats.session = self.session.stats.summary()
            if self._latency_ms:
                self.stats.same_host_latency_ms_p50 = round(float(np.median(self._latency_ms)), 1)
        for r in results:
            if isinstance(r, Exception):
                raise r
        return self.stats

    async def _receive(self, recv: Callable[[], Awaitable], until: asyncio.Event) -> None:
        from nerfconf.net.errors import ConnectionClosedError  # noqa: PLC0415

        while True:
            try:
                packet = await recv()
            except ConnectionClosedError:
                until.set()
                return
            self._shown(self.session.on_packet(packet.seq, packet.payload, packet.t_arrival))
            self._send_feedback(time.monotonic())

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            now = time.monotonic()
            self._shown(self.session.poll(now))
            self._send_feedback(now)

    def _send_feedback(self, now: float) -> None:
        fb = self.session.feedback(now)
        if fb.video is not None and self.video_feedback is not None:
            self.video_feedback(fb.video)
        if fb.keyframe_request and self.feedback is not None:
            # the same I-frame request the avatar mode sends: the sender's encoder in use answers it
            self.feedback(Feedback(iframe_request=True))

    def _shown(self, pictures: list[Picture]) -> None:
        for picture in pictures:
            self._display.put(picture)

    async def _watch_window(self, every: float = 0.1) -> None:
        while not any(getattr(sink, "closed", False) for sink in self.sinks):
            await asyncio.sleep(every)
        self.stats.window_closed = True

    def _show(self) -> None:
        import cv2  # noqa: PLC0415

        size = self.display_size
        intervals: deque[float] = deque([1.0 / self.fps], maxlen=20)
        last: float | None = None
        prev: Picture | None = None
        while (picture := self._display.get()) is not None:
            image = picture.image
            if image.shape[:2] != (size, size):
                image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
            for sink in self.sinks:
                sink.write(image)
            t = time.monotonic()
            self.stats.displayed += 1
            self._latency_ms.append(((int(t * 1000) - picture.timestamp_ms) % TIMESTAMP_MODULO))
            if prev is not None and picture.frame_no == prev.frame_no + 1:
                intervals.append(((picture.timestamp_ms - prev.timestamp_ms) % TIMESTAMP_MODULO) / 1e3)
            if last is not None:
                freeze = 1e3 * (t - last - float(np.median(intervals)))
                self.stats.longest_freeze_ms = round(max(self.stats.longest_freeze_ms, freeze), 1)
            last, prev = t, picture
            if self.record:
                self.shown.append(ShownPicture(picture.frame_no, image, t))
