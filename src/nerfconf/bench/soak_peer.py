"""One peer of ``nerfconf bench soak``, in a process of its own.

It sends a real coded parameter track (looped) at the call's frame rate, as
the call's sender would after extraction, and receives the other peer's
stream through the call's own :class:`~nerfconf.pipeline.receiver.Receiver`:
decoding, acks and I-frame requests, the adaptive playout buffer and
concealment. Only the render process is replaced, by :class:`PlayoutOnly`,
which takes each played slot and draws nothing, so that two peers fit on a
2-core host for half an hour.

The parent hands both peers one start time on the machine-wide monotonic
clock, so each knows when the other captured frame ``k``, and the delay from
that to the slot where frame ``k`` plays is measured directly.
"""

from __future__ import annotations

import asyncio
import math
import queue
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from nerfconf.codec.config import CodecConfig
from nerfconf.codec.encoder import ParamEncoder
from nerfconf.codec.frame import SEQ_MODULO
from nerfconf.net import Connection, JoinInfo, ReceivedFrame, TransportConfig, connect, listen
from nerfconf.net.join import new_token
from nerfconf.pipeline.receiver import Receiver
from nerfconf.pipeline.render_worker import RenderJob, RenderResult
from nerfconf.tracks import ParamTrack
from nerfconf.types import FaceParams

#: the receiver keeps playing this long after the last frame was sent, so late copies still count
LINGER_S = 1.0
#: a frame counts as lost once it was sent this long ago and never arrived (copies and NACKed
#: retransmissions all come within its 150 ms deadline)
SETTLE_S = 1.0


@dataclass(frozen=True)
class PeerSpec:
    #: "a" listens, "b" joins through the emulator
    name: str
    codec_json: str
    track: str
    seconds: float
    every: float
    fps: float
    mode: str
    identity_dir: str
    #: None: listen and report the join string
    join: str | None
    #: this peer's capture clock and the other's, in seconds after the shared start
    phase: float
    peer_phase: float


@dataclass(frozen=True)
class ReceiveSample:
    """What one peer had from the other by ``t`` seconds into the call."""

    t: float
    frames_sent: int
    #: frames the other peer sent at least SETTLE_S before ``t`` (all of them in the final sample)
    peer_frames_due: int
    #: of those, delivered by the transport, and what was missing
    frames_received: int
    frames_lost: int
    frames_decoded: int
    undecodable: int
    iframe_requests: int
    playout_shown: int
    playout_concealed: int
    playout_late: int
    #: median, over the slots played since the last sample, of when the slot played minus when the
    #: other peer captured its frame (NaN: no slot played)
    playout_delay_ms: float
    #: the playout buffer's delay above the fastest recent transit
    jitter_buffer_ms: float


class PlayoutOnly:
    """Stands in for the render process: takes each played slot at its time and draws nothing.

    It also times the slots: when frame ``index`` played, against when the peer captured it."""

    renderer_name = "none (decode and playout only)"
    budget_s = math.inf

    def __init__(self, peer_t0: float, fps: float) -> None:
        self._peer_t0 = peer_t0
        self._fps = fps
        self._done: queue.SimpleQueue[RenderResult] = queue.SimpleQueue()
        self._blank = np.zeros((1, 1, 3), np.uint8)
        self.dropped = 0
        self.delays: list[float] = []

    def submit(self, job: RenderJob) -> None:
        t = time.monotonic()
        self.delays.append(t - (self._peer_t0 + job.index / self._fps))
        self._done.put(RenderResult(job.key, job.index, self._blank, t, t))

    def result(self, timeout: float | None = None) -> RenderResult | None:
        try:
            return self._done.get(timeout=timeout)
        except queue.Empty:
            return None

    def take_delays(self) -> list[float]:
        out, self.delays = self.delays, []
        return out


class DeliveryCount:
    """Counts frames the transport delivered, by unwrapped sequence number, in bounded memory.

    Frames arrive nearly in order, so those below a point a second back are all
    counted once the newest ``recent`` are set aside."""

    def __init__(self, recent: int = 256) -> None:
        self.total = 0
        self._newest: int | None = None
        self._recent: deque[int] = deque(maxlen=recent)

    def add(self, seq: int) -> None:
        if self._newest is None:
            index = seq
        else:
            step = (seq - self._newest) % SEQ_MODULO
            index = self._newest + (step if step < SEQ_MODULO // 2 else step - SEQ_MODULO)
        self._newest = index if self._newest is None else max(self._newest, index)
        self.total += 1
        self._recent.append(index)

    def below(self, k: int) -> int:
        """Frames delivered with index below ``k`` (``k`` at most a few hundred frames behind the newest)."""
        return self.total - sum(1 for i in self._recent if i >= k)


def peer_main(spec: PeerSpec, reports, go, start_at) -> None:
    """Process entry point: runs the peer and reports to ``reports`` (a multiprocessing queue)."""
    try:
        asyncio.run(_peer(spec, reports, go, start_at))
    except BaseException as exc:  # noqa: BLE001 - the parent turns it into one line
        reports.put(("error", spec.name, f"{type(exc).__name__}: {exc}"))
        raise


async def _peer(spec: PeerSpec, reports, go, start_at) -> None:
    config = TransportConfig(mode=spec.mode, identity_dir=spec.identity_dir)  # type: ignore[arg-type]
    if spec.join is None:
        async with listen("127.0.0.1", 0, new_token(), config) as server:
            reports.put(("join", spec.name, str(server.join_info)))
            conn = await asyncio.wait_for(server.accept(), 60)
            await _call(spec, conn, reports, go, start_at)
    else:
        async with connect(JoinInfo.parse(spec.join), config) as conn:
            await _call(spec, conn, reports, go, start_at)


async def _call(spec: PeerSpec, conn: Connection, reports, go, start_at) -> None:
    codec = CodecConfig.from_json(spec.codec_json)
    track = ParamTrack.load(spec.track).with_layout(codec.layout)
    encoder = ParamEncoder(codec)
    conn.attach_encoder(encoder)
    reports.put(("connected", spec.name, None))
    if not await asyncio.to_thread(go.wait, 120):
        raise TimeoutError("the soak never started")
    start = start_at.value
    t0, peer_t0 = start + spec.phase, start + spec.peer_phase
    frames = round(spec.seconds * spec.fps)
    worker = PlayoutOnly(peer_t0, spec.fps)
    receiver = Receiver(worker, codec, fps=spec.fps, feedback=conn.send_feedback)  # type: ignore[arg-type]
    delivered = DeliveryCount()
    sent = [0]

    async def recv() -> ReceivedFrame:
        got = await conn.recv_frame()
        delivered.add(got.seq)
        return got

    def sample(t: float, due: int) -> ReceiveSample:
        delays = worker.take_delays()
        stats, playout = receiver.stats, receiver.playout.stats
        received = delivered.below(due)
        return ReceiveSample(
            t=t, frames_sent=sent[0], peer_frames_due=due, frames_received=received, frames_lost=due - received,
            frames_decoded=stats.decoded, undecodable=stats.missing_reference + stats.undecodable,
            iframe_requests=stats.iframe_requests, playout_shown=playout.shown,
            playout_concealed=playout.concealed, playout_late=playout.late,
            playout_delay_ms=1e3 * float(np.median(delays)) if delays else math.nan,
            jitter_buffer_ms=1e3 * playout.delay)

    async def send() -> None:
        loop = asyncio.get_running_loop()
        for k in range(frames):
            t = t0 + k / spec.fps
            await asyncio.sleep(max(0.0, t - loop.time()))
            i = k % len(track)
            params = FaceParams.from_vector(track.values[i], codec.layout, face_found=bool(track.face_found[i]),
                                            t_capture=t, index=k)
            # as the call's sender: a frame is worth sending until the one after it is due on screen
            conn.send_frame(encoder.encode(params), t + 3 / spec.fps)
            sent[0] += 1

    async def report() -> None:
        loop = asyncio.get_running_loop()
        n = 1
        while n * spec.every <= spec.seconds + 1e-9:
            await asyncio.sleep(max(0.0, start + n * spec.every - loop.time()))
            t_settled = n * spec.every - SETTLE_S - spec.peer_phase
            due = min(frames, max(0, math.floor(t_settled * spec.fps) + 1))
            reports.put(("sample", spec.name, sample(n * spec.every, due)))
            n += 1

    stop = asyncio.Event()
    asyncio.get_running_loop().call_at(t0 + spec.seconds + LINGER_S, stop.set)
    tasks = [asyncio.create_task(send()), asyncio.create_task(report())]
    await receiver.run(recv, until=stop)
    for task in tasks:
        if not task.done():
            task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    reports.put(("done", spec.name, (sample(spec.seconds, frames), conn.stats())))
    await conn.close()
