"""One peer of a call: a sender, a receiver, or both, on one QUIC connection.

A receiving peer asks the other for the mode it can show: avatar parameters when
it has an avatar of them, video otherwise (``ModeRequest``, when the call opens),
and shows whichever the sender says it sends (``ModeSwitch``). A
:class:`ModeControl` asks for another mode mid-call.
"""

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
from nerfconf.net.messages import CallMode, ModeRequest, ModeSwitch, VideoFeedback
from nerfconf.pipeline.media_gate import GatedSink, MediaGate
from nerfconf.pipeline.probe import StampLog
from nerfconf.pipeline.receiver import Receiver, ReceiverStats
from nerfconf.pipeline.render_worker import RenderWorker
from nerfconf.pipeline.sender import Sender, SenderStats
from nerfconf.pipeline.video_receiver import ShownPicture, VideoReceiver, VideoReceiverStats
from nerfconf.types import FaceParams, Frame
from nerfconf.video.settings import VideoSettings

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
    #: receive the other peer's face as video when there is no avatar of them (``peer`` is None)
    receive_video: bool = False
    #: the video mode's codec, bitrate ceiling and display size (both directions)
    video: VideoSettings = field(default_factory=VideoSettings)
    #: the mode to ask for first (None: avatar when there is an avatar of the peer, else video); a call
    #: that starts in video and switches once an avatar is at hand starts with VIDEO
    start_in: CallMode | None = None

    @property
    def sends(self) -> bool:
        return self.own is not None and self.source is not None

    @property
    def receives(self) -> bool:
        return self.peer is not None or self.receive_video

    @property
    def first_mode(self) -> CallMode:
        """The mode this peer asks the other for when the call opens."""
        if self.start_in is not None:
            return self.start_in
        return CallMode.AVATAR if self.peer is not None else CallMode.VIDEO


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
    video_receiver: VideoReceiverStats | None = None
    #: pictures the video path showed, when recording
    video_shown: list[ShownPicture] = field(default_factory=list)
    #: the modes the peer announced, in order
    peer_modes: list[ModeSwitch] = field(default_factory=list)


class ModeControl:
    """Asks the other peer for a mode while :func:`run_peer` runs (the avatar exchange will use it once an
    avatar of the peer arrives mid-call)."""

    def __init__(self) -> None:
        self._conn = None
        self._gate: MediaGate | None = None
        self._video: VideoSettings = VideoSettings()
        self._has_avatar = False
        self.requested: CallMode | None = None

    def bind(self, conn, gate: MediaGate, video: VideoSettings, *, has_avatar: bool) -> None:
        self._conn, self._gate, self._video, self._has_avatar = conn, gate, video, has_avatar

    def request(self, mode: CallMode) -> None:
        if self._conn is None or self._gate is None:
            raise RuntimeError("this ModeControl is not bound to a running call")
        if mode == CallMode.AVATAR and not self._has_avatar:
            raise ValueError("this peer has no avatar of the other to render, so it cannot ask for avatar mode")
        from nerfconf.video.encoder import available_codecs  # noqa: PLC0415

        self._conn.send_media_message(ModeRequest(mode, available_codecs(), self._video.max_kbps))
        self._gate.requested(mode)
        self.requested = mode


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


async def _discard_frames(conn, stop: asyncio.Event) -> None:
    from nerfconf.net.errors import ConnectionClosedError  # noqa: PLC0415

    while not stop.is_set():
        try:
            async with asyncio.timeout(0.2):
                await conn.recv_frame()
        except TimeoutError:
            continue
        except ConnectionClosedError:
            return


async def run_peer(plan: PeerPlan, conn, *, stamps: StampLog | None = None,
                   worker: RenderWorker | None = None, stop: asyncio.Event | None = None,
                   control: ModeControl | None = None) -> PeerResult:
    """Runs this peer's half of the call over an open connection until its source ends (plus ``linger``),
    ``seconds`` pass, or ``stop`` is set. ``worker`` is a started render worker for the peer's avatar;
    ``control`` asks the other peer for another mode mid-call."""
    stamps = stamps or StampLog()
    result = PeerResult(stamps=stamps)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    tasks = []
    sender = receiver = video_receiver = None
    gate = MediaGate(plan.first_mode)

    def on_media(msg) -> None:
        if isinstance(msg, ModeRequest):
            if sender is not None:
                sender.request_mode(msg)
        elif isinstance(msg, VideoFeedback):
            if sender is not None:
                sender.on_video_feedback(msg, loop.time())
        elif isinstance(msg, ModeSwitch):
            gate.announced(msg)

    if plan.sends:
        recorded: dict[int, np.ndarray] = result.inputs

        def keep(frame: Frame, params: FaceParams) -> None:
            if plan.record:
                recorded[frame.index] = frame.image

        sender = Sender(plan.source, plan.own.face_model, plan.own.codec, stamps=stamps,
                        on_frame=keep, max_frames=plan.max_frames, record=plan.record,
                        refiner=pose_refiner(plan.own, plan.refine_every) if plan.refine_pose else None,
                        video=plan.video)
        conn.attach_encoder(sender)  # acks to its parameter encoder, I-frame requests to the mode it sends
    # once the sender exists: a mode request that came before now reaches it
    conn.on_media_message(on_media)
    if plan.sends:
        tasks.append(asyncio.create_task(sender.run(conn.send_frame, link=conn), name="sender"))
    if plan.receives:
        from nerfconf.video.encoder import available_codecs  # noqa: PLC0415

        if plan.peer is not None and worker is None:
            raise ValueError("a peer that renders the other's avatar needs a started render worker")
        if plan.peer is None:
            log.warning("no avatar of the other peer (--avatar-peer): showing them as video of at most %d kbps "
                        "instead", plan.video.max_kbps)
        video_receiver = VideoReceiver([GatedSink(s, gate, CallMode.VIDEO) for s in plan.sinks],
                                       display_size=plan.video.display_size, fps=plan.fps,
                                       codecs=available_codecs(), feedback=conn.send_feedback,
                                       video_feedback=conn.send_media_message, record=plan.record)
        tasks.append(asyncio.create_task(video_receiver.run(conn.recv_video, until=stop), name="video"))
        if plan.peer is not None:
            receiver = Receiver(worker, plan.peer.codec, fps=plan.fps,
                                sinks=[GatedSink(s, gate, CallMode.AVATAR) for s in plan.sinks], view=plan.view,
                                stamps=stamps, record=plan.record, feedback=conn.send_feedback)
            tasks.append(asyncio.create_task(receiver.run(conn.recv_frame, until=stop), name="receiver"))
        else:
            # parameters sent before our request arrived have nothing to render them: read and drop them
            tasks.append(asyncio.create_task(_discard_frames(conn, stop), name="discard"))
        control = control or ModeControl()
        control.bind(conn, gate, plan.video, has_avatar=plan.peer is not None)
        control.request(plan.first_mode)

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
    result.video_receiver = video_receiver.stats if video_receiver else None
    result.video_shown = video_receiver.shown if video_receiver else []
    result.peer_modes = list(gate.switches)
    # map sender input frames from capture index to sequence number for the side-by-side
    if plan.record and sender is not None:
        rows = stamps.rows()
        by_index = {int(r["index"]): seq for seq, r in rows.items() if "index" in r}
        result.inputs = {by_index[i]: img for i, img in result.inputs.items() if i in by_index}
    return result
