"""``nerfconf demo``: a two-party call on loopback with the bundled sample avatar.

Party A's "camera" is the sample's demo clip (rendered once from the avatar and
a track of its enrollment video's held-out frames) or a real video/camera.
A's sender extracts, encodes and sends over QUIC, through the network
emulator at RTT 20 ms, to party B, whose receiver decodes, buffers, renders
A's avatar and displays it. At the end the demo writes the side-by-side video
and the stats, and prints the latency table (the paper's Table 1).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from nerfconf.avatar.bundle import AvatarBundle
from nerfconf.avatar.pose_fit import DEFAULT_REFINE_EVERY
from nerfconf.capture.source import SourceSpec
from nerfconf.net import TransportConfig, connect, listen
from nerfconf.net.join import new_token
from nerfconf.net.netem import LinkSpec, NetemRelay
from nerfconf.pipeline.demo_clip import DEMO_CLIP
from nerfconf.pipeline.probe import StampLog, module_latencies
from nerfconf.pipeline.render_worker import RenderWorker, call_render_threads
from nerfconf.pipeline.report import side_by_side, write_stats
from nerfconf.pipeline.session import PeerPlan, run_peer
from nerfconf.playout.sinks import VideoFileSink

SAMPLE = Path(__file__).resolve().parents[3] / "avatars" / "sample"
#: a call from a camera or the looped demo clip runs this long unless told otherwise
DEFAULT_SECONDS = 20.0


@dataclass(frozen=True)
class DemoSettings:
    avatar: Path = SAMPLE
    video: Path | None = None
    camera: int | None = None
    #: stop after this many seconds (default: the clip's length; 20 s for a camera or the looped demo clip)
    seconds: float | None = None
    fps: float = 20.0
    rtt_ms: float = 20.0
    loss: float = 0.0
    mode: str = "datagram"
    resolution: int | None = None
    device: str = "cpu"
    #: CPU threads of the render process (None: every core but one where this machine also sends,
    #: ``render_worker.call_render_threads``)
    render_threads: int | None = None
    #: render smaller when frames run late (``render_budget``)
    adaptive_resolution: bool = True
    #: A's sender refines its poses through A's avatar (``avatar.pose_fit``)
    refine_pose: bool = True
    refine_every: int = DEFAULT_REFINE_EVERY
    out: Path = Path("demo_out")
    seed: int = 1
    #: print a line a second while the call runs
    progress: bool = False


@dataclass
class DemoResult:
    stats: dict
    video: Path
    stats_path: Path
    latencies: list
    #: the two peers' results (A sends, B receives)
    sender: object = None
    receiver: object = None


async def _call(settings: DemoSettings, bundle: AvatarBundle, worker: RenderWorker) -> tuple:
    own_source = _source(settings)
    stamps = StampLog()
    config = TransportConfig(mode=settings.mode)
    stop = asyncio.Event()
    seconds = call_seconds(settings)
    max_frames = int(seconds * settings.fps) if seconds else None
    live = VideoFileSink(settings.out / "received.mp4", fps=settings.fps,
                         size=settings.resolution or bundle.resolution)
    a = PeerPlan(own=bundle, source=own_source, fps=settings.fps, record=True, max_frames=max_frames,
                 refine_pose=settings.refine_pose, refine_every=settings.refine_every)
    b = PeerPlan(peer=bundle, fps=settings.fps, sinks=[live], record=True)
    link = LinkSpec(delay_ms=settings.rtt_ms / 2, loss=settings.loss)
    try:
        async with listen("127.0.0.1", 0, new_token(), config) as server:
            async with NetemRelay(("127.0.0.1", server.join_info.port), link, link, seed=settings.seed) as relay:
                join = dataclasses.replace(server.join_info, port=relay.address[1])
                async with connect(join, config) as conn_a:
                    conn_b = await server.accept()
                    ticker = asyncio.create_task(_report(stamps, conn_a)) if settings.progress else None
                    try:
                        got_a, got_b = await asyncio.gather(
                            run_peer(a, conn_a, stamps=stamps, stop=stop),
                            run_peer(b, conn_b, stamps=stamps, worker=worker, stop=stop))
                    finally:
                        if ticker is not None:
                            ticker.cancel()
    finally:
        live.close()
    return got_a, got_b, stamps


async def _report(stamps: StampLog, conn) -> None:
    """One line a second: what has been sent, shown, and how late."""
    started = time.monotonic()
    while True:
        await asyncio.sleep(1.0)
        rows = stamps.rows().values()
        sent = sum("encode_out" in r for r in rows)
        shown = [r for r in rows if "display" in r and "capture" in r]
        latency = sorted(1e3 * (r["display"] - r["capture"]) for r in shown)
        kbps = 8 * sum(r.get("bytes", 0) for r in rows) / 1e3 / (time.monotonic() - started)
        median = f", median latency {latency[len(latency) // 2]:.0f} ms" if latency else ""
        print(f"  call {time.monotonic() - started:4.0f} s: sent {sent} frames ({kbps:.1f} kbps), "
              f"rendered and shown {len(shown)}{median}", flush=True)


def demo_clip(settings: DemoSettings) -> Path | None:
    """The bundle's recorded clip when no video or camera is given, else None."""
    if settings.video is not None or settings.camera is not None:
        return None
    clip = settings.avatar / DEMO_CLIP
    if not clip.is_file():
        raise FileNotFoundError(f"{clip} is missing: give --video or --camera")
    return clip


def call_seconds(settings: DemoSettings) -> float | None:
    """How long the call runs: as asked, else 20 s for a camera or the (looped) demo clip, else the video's length."""
    if settings.seconds is not None:
        return settings.seconds
    return None if settings.video is not None else DEFAULT_SECONDS


def _source(settings: DemoSettings) -> SourceSpec:
    """The demo clip, looped, unless a video or camera is given. Frames are not cropped: pose angles
    and expression coefficients do not depend on where the face sits in the frame."""
    clip = demo_clip(settings)
    if clip is not None:
        return SourceSpec(video=clip, fps=settings.fps, loop=True)
    return SourceSpec(video=settings.video, camera=settings.camera, fps=settings.fps)


def run_demo(settings: DemoSettings) -> DemoResult:
    settings.out.mkdir(parents=True, exist_ok=True)
    bundle = AvatarBundle.load(settings.avatar)
    started = time.monotonic()
    # The renderer is pre-warmed before the call starts, as the paper pre-warms its models.
    with RenderWorker(settings.avatar, resolution=settings.resolution, device=settings.device,
                      threads=call_render_threads(settings.render_threads, sending=True), fps=settings.fps,
                      adaptive=settings.adaptive_resolution) as worker:
        a, b, stamps = asyncio.run(_call(settings, bundle, worker))
    rows = stamps.rows()
    latencies = module_latencies(rows)
    size = settings.resolution or bundle.resolution
    video = settings.out / "side_by_side.mp4"
    written = side_by_side(a.inputs, b.shown, rows, video, fps=settings.fps, size=size)
    seconds = a.sender.seconds if a.sender else 0.0
    stats = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(settings).items()},
        "renderer": b.renderer,
        "wall_seconds": round(time.monotonic() - started, 2),
        "sender": a.sender.to_dict() if a.sender else {},
        "receiver": b.receiver.to_dict() if b.receiver else {},
        "transport_sender": a.transport,
        "transport_receiver": b.transport,
        "payload_kbps": a.sender.to_dict()["payload_kbps"] if a.sender else 0.0,
        "wire_kbps_sent": round(8 * a.transport.get("wire_bytes_sent", 0) / max(seconds, 1e-9) / 1e3, 3),
        "latency_ms": [m.to_dict() for m in latencies],
        "side_by_side_frames": written,
    }
    stats_path = settings.out / "stats.json"
    write_stats(stats_path, stats)
    return DemoResult(stats, video, stats_path, latencies, a, b)
