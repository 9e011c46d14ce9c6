"""One peer of a call: a sender, a receiver, or both, on one QUIC connection."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nerfconf.avatar.bundle import AvatarBundle
from nerfconf.capture.source import SourceSpec
from nerfconf.pipeline.probe import StampLog
from nerfconf.pipeline.receiver import Receiver, ReceiverStats
from nerfconf.pipeline.render_worker import RenderWorker
from nerfconf.pipeline.sender import Sender, SenderStats
from nerfconf.types import Frame, FaceParams


@dataclass
class PeerPlan:
    """What this peer does. ``own`` is this user's bundle (face model and codec for sending);
    ``peer`` is the other user's bundle (avatar and codec for receiving)."""

    own: AvatarBundle | None = None
    source: SourceSpec | None = None
    peer_dir: Path | None = None
    peer: AvatarBundle | None = None
    fps: float = 20.0
    resolution: int | None = None
    device: str = "cpu"
    view: tuple[float, float, float] | None = None
    sinks: list = field(default_factory=list)
    #: keep what was shown (and sent) in memory for the side-by-side video
    record: bool = False
    max_frames: int | None = None
    #: seconds to keep receiving after the local source ended (or for a receive-only peer, in total)
    linger: float = 1.0
    seconds: float | None = None

    @property
    def sends(self) -> bool:
        return self.own is not None and self.source is not None

    @property
    def receives(self) -> bool:
        return self.peer is not None


@dataclass
class PeerResult:
    sender: SenderStats | None = None
    receiver: ReceiverStats | None = None
    stamps: StampLog | None = None
    inputs: dict[int, np.ndarray] = field(default_factory=dict)
    shown: list = field(default_factory=list)
    transport: dict = field(default_factory=dict)
    renderer: str = ""


async def run_peer(plan: PeerPlan, conn, *, stamps: StampLog | None = None,
                   worker: RenderWorker | None = None, stop: asyncio.Event | None = None) -> PeerResult:
    """Runs this peer's half of the call over an open connection until its source ends (plus ``linger``),
    ``seconds`` pass, or ``stop`` is set. ``worker`` is a started render worker for the peer's avatar."""
    stamps = stamps or StampLog()
    result = PeerResult(stamps=stamps)
    stop = stop or asyncio.Event()
    tasks = []
    sender = receiver = None
    if plan.sends:
        recorded: dict[int, np.ndarray] = result.inputs

        def keep(frame: Frame, params: FaceParams) -> None:
            if plan.record:
                recorded[frame.index] = frame.image

        sender = Sender(plan.source, plan.own.face_model, plan.own.codec, stamps=stamps,
                        on_frame=keep, max_frames=plan.max_frames)
        conn.attach_encoder(sender.encoder)
        tasks.append(asyncio.create_task(sender.run(conn.send_frame), name="sender"))
    if plan.receives:
        if worker is None:
            raise ValueError("a receiving peer needs a started render worker")
        receiver = Receiver(worker, plan.peer.codec, fps=plan.fps, sinks=plan.sinks, view=plan.view,
                            stamps=stamps, record=plan.record, request_iframe=conn.request_iframe)
        tasks.append(asyncio.create_task(receiver.run(conn.recv_frame, until=stop), name="receiver"))
    started = time.monotonic()

    async def stopper() -> None:
        if tasks and tasks[0].get_name() == "sender":
            try:
                await tasks[0]
            finally:
                await asyncio.sleep(plan.linger)
                stop.set()
        elif plan.seconds is not None:
            await asyncio.sleep(plan.seconds)
            stop.set()

    watch = asyncio.create_task(stopper())
    if plan.seconds is not None:
        asyncio.get_running_loop().call_later(plan.seconds, stop.set)
    try:
        await stop.wait()
        if sender is not None:
            sender.stop()
        done = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        watch.cancel()
    for item in done:
        if isinstance(item, BaseException) and not isinstance(item, asyncio.CancelledError):
            raise item
    result.sender = sender.stats if sender else None
    result.receiver = receiver.stats if receiver else None
    result.shown = receiver.shown if receiver else []
    result.transport = conn.stats().to_dict() if hasattr(conn.stats(), "to_dict") else dict(conn.stats())
    result.renderer = worker.renderer_name if worker else ""
    _ = time.monotonic() - started
    # map sender input frames from capture index to sequence number for the side-by-side
    if plan.record and sender is not None:
        rows = stamps.rows()
        by_index = {int(r["index"]): seq for seq, r in rows.items() if "index" in r}
        result.inputs = {by_index[i]: img for i, img in result.inputs.items() if i in by_index}
    return result
