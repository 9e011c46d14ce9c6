"""``nerfconf demo``: the two-party loopback call behind ``make demo``."""

from __future__ import annotations

import argparse
from pathlib import Path

from nerfconf.commands.common import (
    ADAPTIVE_HELP,
    REFINE_EVERY,
    REFINE_EVERY_HELP,
    RENDER_THREADS_HELP,
    UserError,
    existing_dir,
    existing_file,
    refine_every,
)
from nerfconf.commands.outputs import output_dir


def run(args: argparse.Namespace) -> int:
    from nerfconf.avatar.bundle import BundleError  # noqa: PLC0415
    from nerfconf.capture.source import CameraError  # noqa: PLC0415
    from nerfconf.capture.video import VideoError  # noqa: PLC0415
    from nerfconf.pipeline.demo import SAMPLE, DemoSettings, demo_clip, run_demo  # noqa: PLC0415
    from nerfconf.pipeline.render_worker import RenderWorkerError  # noqa: PLC0415
    from nerfconf.pipeline.report import call_summary, latency_table  # noqa: PLC0415
    from nerfconf.ui import console as make_console  # noqa: PLC0415

    if not 0 <= args.loss < 1:
        raise UserError(f"--loss must be in 0..1, got {args.loss}")
    if args.seconds is not None and args.seconds <= 0:
        raise UserError(f"--seconds must be positive, got {args.seconds}")
    output_dir(args.out, "--out")
    console = make_console()
    settings = DemoSettings(avatar=args.avatar or SAMPLE, video=args.video, camera=args.camera,
                            seconds=args.seconds, rtt_ms=args.rtt_ms, loss=args.loss, mode=args.mode,
                            resolution=args.resolution, render_threads=args.render_threads, out=args.out,
                            adaptive_resolution=args.adaptive_resolution,
                            refine_pose=args.refine_pose, refine_every=refine_every(args.refine_every), progress=True)
    console.print(f"[bold]nerfconf demo[/]: a call on loopback, RTT {settings.rtt_ms:g} ms, "
                  f"{100 * settings.loss:g} % loss, {settings.mode} mode; avatar {settings.avatar}")
    clip = demo_clip(settings)
    if clip is not None:
        console.print(f"camera: a recording ({clip.name}: the held-out end of the sample's enrollment video, "
                      "which the avatar never trained on, looped), not a live camera")
    console.print("starting the renderer (compiling kernels, once) ...")
    try:
        result = run_demo(settings)
    except (BundleError, VideoError, CameraError, RenderWorkerError, FileNotFoundError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    s = result.stats
    console.print(latency_table(result.latencies, title="Latency per module, this call (ms)"))
    sender, receiver = s["sender"], s["receiver"]
    console.print(f"{s['payload_kbps']:.2f} kbps payload ({s['wire_kbps_sent']:.1f} kbps on the wire with "
                  f"QUIC/UDP/IP); {s['renderer']}")
    for line in call_summary(sender, receiver, result.latencies):
        console.print(line)
    console.print(f"wrote {result.video} (input | received) and {result.stats_path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="a two-party 3D video call on loopback with the bundled sample avatar",
        description="Runs a real call on this machine: party A's camera (by default a recording of a real "
        "person, the sample avatar's held-out frames, looped for 20 s; or --video/--camera) is tracked, "
        "coded to ~5 kbps and sent over QUIC through a network emulator "
        "(RTT 20 ms) to party B, which renders A's avatar. Writes a side-by-side video and a stats file, "
        "and prints the latency per module next to the paper's Table 1.")
    p.add_argument("--avatar", type=existing_dir, default=None,
                   help="avatar bundle of party A (default: the bundled sample)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--video", type=existing_file, default=None, help="drive the call from this video")
    src.add_argument("--camera", type=int, default=None, metavar="N", help="drive the call from camera N")
    p.add_argument("--seconds", type=float, default=None,
                   help="length of the call (default 20 s; the whole video for --video)")
    p.add_argument("--rtt-ms", type=float, default=20.0, help="round-trip time the emulator adds (default 20)")
    p.add_argument("--loss", type=float, default=0.0, help="random packet loss each way, 0..1 (default 0)")
    p.add_argument("--mode", choices=("datagram", "stream"), default="datagram",
                   help="datagrams with copies of the last frames (default) or the paper's reliable stream")
    p.add_argument("--resolution", type=int, default=None, help="render resolution (default: the avatar's)")
    p.add_argument("--adaptive-resolution", action=argparse.BooleanOptionalAction, default=True, help=ADAPTIVE_HELP)
    p.add_argument("--render-threads", type=int, default=None, help=RENDER_THREADS_HELP)
    p.add_argument("--refine-pose", action=argparse.BooleanOptionalAction, default=True,
                   help="A's sender corrects each head pose through A's avatar before sending it (default on: "
                   "one small render every --refine-every frames); --no-refine-pose sends the tracker's poses")
    p.add_argument("--refine-every", type=int, default=REFINE_EVERY, metavar="N", help=REFINE_EVERY_HELP)
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output directory (default demo_out/)")
    p.set_defaults(func=run)
