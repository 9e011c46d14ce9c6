"""``nerfconf call``, ``send`` and ``receive``: one peer of a real call, in this process.

The listening peer prints a join string (address, certificate fingerprint and
room token) for the other peer to pass to ``--connect``. A receiving peer without
an avatar of the other (no ``--avatar-peer``) is sent video instead.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nerfconf.avatar.bundle import AvatarBundle
from nerfconf.avatar.pose_fit import DEFAULT_REFINE_EVERY
from nerfconf.avatar.view import View
from nerfconf.capture.source import SourceSpec
from nerfconf.net import TransportConfig, connect, listen
from nerfconf.net.join import JoinInfo, new_token
from nerfconf.net.messages import VideoCodec
from nerfconf.pipeline.probe import StampLog
from nerfconf.pipeline.render_worker import RenderWorker, call_render_threads
from nerfconf.pipeline.session import PeerPlan, PeerResult, run_peer
from nerfconf.playout.sinks import VideoFileSink, WindowSink, has_display
from nerfconf.video.settings import VideoSettings


@dataclass(frozen=True)
class CallSettings:
    #: this user's bundle (face model and codec for sending); None: receive only
    own: Path | None = None
    #: the other user's bundle (their avatar); None: send only, or receive video (``receive_video``)
    peer: Path | None = None
    #: receive the other peer; as video when there is no ``peer`` bundle (``call`` and ``receive``)
    receive_video: bool = False
    #: the video mode: the most this peer sends and asks to be sent, and the codec it sends in
    video_kbps: int = 32
    video_codec: str = "h264"
    listen: tuple[str, int] | None = None
    #: the host the join string names when listening (default: the listening host)
    advertise: str | None = None
    join: str | None = None
    token: str | None = None
    video: Path | None = None
    camera: int | None = None
    loop_video: bool = False
    #: read the video as fast as extraction takes it instead of at the call's frame rate (for evaluation)
    paced: bool = True
    fps: float = 20.0
    seconds: float | None = None
    save: Path | None = None
    window: bool = True
    #: the receiver's chosen view (None: the sender's own); a window's arrow keys change it live
    view: View | None = None
    resolution: int | None = None
    device: str = "cpu"
    mode: str = "datagram"
    #: CPU threads of the render process (None: every core but one where this machine also sends,
    #: ``render_worker.call_render_threads``)
    render_threads: int | None = None
    #: render smaller when frames run late (``render_budget``)
    adaptive_resolution: bool = True
    #: refine each sent pose through this user's own avatar (``avatar.pose_fit``)
    refine_pose: bool = True
    refine_every: int = DEFAULT_REFINE_EVERY

    def __post_init__(self) -> None:
        if (self.listen is None) == (self.join is None):
            raise ValueError("give exactly one of --listen or --connect")
        if self.advertise is not None and self.listen is None:
            raise ValueError("--advertise names the address of a listening peer; it goes with --listen")
        if self.listen is not None and self.advertise is None and _every_address(self.listen[0]):
            host, port = self.listen
            raise ValueError(f"--listen {host}:{port} takes calls on every address of this machine, so the join "
                             "string cannot name one by itself: add --advertise HOST, the address the other peer "
                             "dials (e.g. this machine's LAN address)")
        if self.own is None and self.peer is None and not self.receive_video:
            raise ValueError("a call needs --avatar-self (to send), --avatar-peer (to receive), or both")
        if self.video_codec not in ("h264", "av1"):
            raise ValueError(f"--video-codec is h264 or av1, not {self.video_codec!r}")
        try:
            VideoSettings(VideoCodec[self.video_codec.upper()], self.video_kbps)
        except ValueError as exc:
            raise ValueError(f"--video-kbps: {exc}") from None
        if self.receive_video and self.peer is None and self.resolution is not None:
            if not 16 <= self.resolution <= 1024:
                raise ValueError(f"--resolution: video is shown at 16..1024 px, got {self.resolution}")
        if self.own is not None and self.video is None and self.camera is None:
            raise ValueError("sending needs --video PATH or --camera N")


    @property
    def receives(self) -> bool:
        return self.peer is not None or self.receive_video

    def video_settings(self, display_size: int = VideoSettings.display_size) -> VideoSettings:
        # the avatar's render size can exceed what video is shown at: video keeps to its own bound
        return VideoSettings(VideoCodec[self.video_codec.upper()], self.video_kbps,
                             display_size=min(max(display_size, 16), 1024))


def _every_address(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:  # a host name
        return host == ""


async def run_call(settings: CallSettings, *, on_join: Callable[[str], None] = print,
                   worker: RenderWorker | None = None) -> PeerResult:
    own = AvatarBundle.load(settings.own) if settings.own else None
    peer = AvatarBundle.load(settings.peer) if settings.peer else None
    sinks: list = []
    size = settings.resolution or (peer.resolution if peer else VideoSettings.display_size)
    if settings.receives:
        if settings.window and has_display():
            title = str(peer.metadata.get("source", "peer")) if peer else "the other peer (video)"
            sinks.append(WindowSink("nerfconf: " + title, (2 * size, 2 * size), settings.view))
        if settings.save is not None:
            sinks.append(VideoFileSink(settings.save, fps=settings.fps, size=size))
    plan = PeerPlan(own=own, source=SourceSpec(video=settings.video, camera=settings.camera, fps=settings.fps,
                                      loop=settings.loop_video, paced=settings.paced) if own else None,
                    peer=peer, fps=settings.fps, view=settings.view,
                    sinks=sinks, seconds=settings.seconds, refine_pose=settings.refine_pose,
                    refine_every=settings.refine_every, receive_video=settings.receive_video,
                    video=settings.video_settings(display_size=size),
                    max_frames=int(settings.seconds * settings.fps) if settings.seconds else None)
    config = TransportConfig(mode=settings.mode)
    stamps = StampLog()
    try:
        if settings.listen is not None:
            host, port = settings.listen
            async with listen(host, port, settings.token or new_token(), config,
                              advertise_host=settings.advertise) as server:
                on_join(str(server.join_info))
                conn = await server.accept()
                return await run_peer(plan, conn, stamps=stamps, worker=worker)
        join = JoinInfo.parse(settings.join)
        async with connect(join, config) as conn:
            return await run_peer(plan, conn, stamps=stamps, worker=worker)
    finally:
        for sink in sinks:
            sink.close()


def call(settings: CallSettings, on_join: Callable[[str], None] = print) -> PeerResult:
    if settings.peer is None:
        return asyncio.run(run_call(settings, on_join=on_join))
    with RenderWorker(settings.peer, resolution=settings.resolution, device=settings.device,
                      threads=call_render_threads(settings.render_threads, sending=settings.own is not None),
                      fps=settings.fps,
                      adaptive=settings.adaptive_resolution) as worker:
        return asyncio.run(run_call(settings, on_join=on_join, worker=worker))
