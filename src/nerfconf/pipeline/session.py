"""One peer of a call: a sender, a receiver, or both, on one QUIC connection."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass, field

import numpy as np

from nerfconf.avatar.bundle import AvatarBundle
from nerfconf.avatar.pose_fit import DEFAULT_REFINE_EVERY, PoseRefiner, RefineSettings
from nerfconf.avatar.view import View
from nerfconf.capture.source import SourceSpec
from nerfconf.pipeline.probe import StampLog
from nerfconf.pipeline.receiver import Receiver, ReceiverStats
from nerfconf.pipeline.render_worker import RenderWorker
from nerfconf.pipeline.sender import Sender, SenderStats
from nerfconf.types import FaceParams, Frame

log = logging.getLogger(__name__)


@dataclass
class PeerPlan:
    """What this peer does. ``own`` is this user's bundle (face model and codec for sending);
    ``peer`` is the other user's bundle (avatar and codec for receiving)."""

    own: AvatarBundle | None = None
    source: SourceSpec | None = None
    peer: AvatarBundle | None = None
    fps: float = 20.0
    #: the receiver's chosen view (None: the sender's own); a window's arrow keys change it live
    view: View | None = None
    sinks: list = field(default_factory=list)
    #: keep what was shown (and sent) in memory for the side-by-side video
    record: bool = False
    max_frames: int | None = None
    #: seconds to keep receiving after the local source ended (or for a receive-only peer, in total)
    linger: float = 1.0
    seconds: float | None = None
    #: refine each sent pose through ``own``'s avatar (``avatar.pose_fit``): better placed heads for CPU
    refine_pose: bool = True
    #: fit every Nth frame; those between take the last correction
    refine_every: int = DEFAULT_REFINE_EVERY

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
    #: seq -> parameter vector sent / decoded, when recording
    sent: dict[int, np.ndarray] = field(default_factory=dict)
    decoded: dict[int, np.ndarray] = field(default_factory=dict)
    transport: dict = field(default_factory=dict)
    renderer: str = ""


def pose_refiner(own: AvatarBundle, every: int = DEFAULT_REFINE_EVERY) -> PoseRefiner | None:
    """The sender's pose refiner, on one thread: the render process has the other cores.

    None, with a warning, for an avatar enrolled on frames that were not square, which the
    refiner cannot compare with: the call then sends the tracker's poses.
    """
    cam = own.face_model.camera
    if cam.width != cam.height:
        log.warning("pose refinement needs an avatar enrolled on square frames; this face model was fitted on "
                    "%dx%d, so the tracker's poses are sent as they are", cam.width, cam.height)
        return None
    return PoseRefiner(own, RefineSettings(every=every), threads=1)


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
                        on_frame=keep, max_frames=plan.max_frames, record=plan.record,
                        refiner=pose_refiner(plan.own, plan.refine_every) if plan.refine_pose else None)
        conn.attach_encoder(sender.encoder)
        tasks.append(asyncio.create_task(sender.run(conn.send_frame), name="sender"))
    if plan.receives:
        if worker is None:
            raise ValueError("a receiving peer needs a started render worker")
        receiver = Receiver(worker, plan.peer.codec, fps=plan.fps, sinks=plan.sinks, view=plan.view,
                            stamps=stamps, record=plan.record, feedback=conn.send_feedback)
        tasks.append(asyncio.create_task(receiver.run(conn.recv_frame, until=stop), name="receiver"))

    async def stop_after_sending() -> None:
        # the peer's own source ended: let the last frames arrive and play, then hang up
        await asyncio.wait([tasks[0]])
        await asyncio.sleep(plan.linger)
        stop.set()

    watch = asyncio.create_task(stop_after_sending()) if sender is not None else None
    if plan.seconds is not None:
        asyncio.get_running_loop().call_later(plan.seconds + plan.linger, stop.set)
    try:
        await stop.wait()
        if sender is not None:
            sender.stop()
        done = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        if watch is not None:
            watch.cancel()
    for item in done:
        if isinstance(item, BaseException) and not isinstance(item, asyncio.CancelledError):
            raise item
    result.sender = sender.stats if sender else None
    result.receiver = receiver.stats if receiver else None
    result.shown = receiver.shown if receiver else []
    result.sent = sender.sent or {} if sender else {}
    result.decoded = receiver.decoded if receiver else {}
    result.transport = dataclasses.asdict(conn.stats())
    result.renderer = worker.renderer_name if worker else ""
    # map sender input frames from capture index to sequence number for the side-by-side
    if plan.record and sender is not None:
        rows = stamps.rows()
        by_index = {int(r["index"]): seq for seq, r in rows.items() if "index" in r}
        result.inputs = {by_index[i]: img for i, img in result.inputs.items() if i in by_index}
    return result
