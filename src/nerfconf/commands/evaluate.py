"""``nerfconf eval``: quality and rate measurements of the whole system."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nerfconf.commands.common import UserError, existing_dir, existing_file


def quality(args: argparse.Namespace) -> int:
    from nerfconf.avatar.bundle import BundleError  # noqa: PLC0415
    from nerfconf.capture.video import VideoError  # noqa: PLC0415
    from nerfconf.evaluate.quality import evaluate_quality  # noqa: PLC0415

    strip = args.strip or (args.avatar / "eval_strip.png")
    try:
        result = evaluate_quality(args.avatar, args.video, test_frames=args.test_frames, samples=args.samples,
                                  strip=strip, progress=not args.json)
    except (BundleError, VideoError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    result["strip"] = str(strip)
    print(json.dumps(result, indent=2) if args.json else _summary(result))
    return 0


def _summary(r: dict) -> str:
    full, head = r["full"], r["head"]
    return (f"{r['frames']} held-out frames of {r['video']} at {r['resolution']} px (from frame {r['first_frame']}):\n"
            f"  full frame   PSNR {full['psnr']['mean']:.2f} dB  SSIM {full['ssim']['mean']:.4f}  "
            f"LPIPS {full['lpips']['mean']:.4f}\n"
            f"  inside mask  PSNR {head['psnr']['mean']:.2f} dB  SSIM {head['ssim']['mean']:.4f}\n"
            f"  render {r['render_ms_median']:.0f} ms/frame ({r['renderer']}); strip: {r['strip']}")


def latency(args: argparse.Namespace) -> int:
    from nerfconf.avatar.bundle import BundleError  # noqa: PLC0415
    from nerfconf.evaluate.latency import latency_table_data  # noqa: PLC0415
    from nerfconf.pipeline.demo import SAMPLE  # noqa: PLC0415
    from nerfconf.pipeline.report import latency_table  # noqa: PLC0415
    from nerfconf.ui import console as make_console  # noqa: PLC0415

    try:
        data = latency_table_data(args.avatar or SAMPLE, seconds=args.seconds, resolution=args.resolution,
                                  out=args.out)
    except (BundleError, ValueError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from exc
    if args.json:
        print(json.dumps({"alone_ms": data["alone_ms"], "in_system": [m.to_dict() for m in data["in_system"]],
                          "renderer": data["demo_stats"]["renderer"],
                          "resolution": data["demo_stats"]["settings"]["resolution"]}, indent=2))
        return 0
    make_console().print(latency_table(data["in_system"], data["alone_ms"],
                                       title="Latency per module (ms): this machine vs the paper (2x RTX 4090)"))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="measure the quality of an avatar and the whole system")
    ev_sub = ev.add_subparsers(dest="what", metavar="WHAT", required=True)
    p = ev_sub.add_parser(
        "quality", help="render an avatar's held-out frames and score them (PSNR, SSIM, LPIPS)",
        description="Renders the last --test-frames frames of the avatar's video from the parameters the "
        "sender would transmit, compares them with the head-only frames on white, and writes a strip of "
        "ground truth above avatar.")
    p.add_argument("--avatar", type=existing_dir, required=True, help="avatar bundle directory")
    p.add_argument("--video", type=existing_file, required=True, help="the video the avatar was enrolled from")
    p.add_argument("--test-frames", type=int, default=500, help="held-out frames at the end (default 500)")
    p.add_argument("--samples", type=int, default=48, help="samples per ray (default 48)")
    p.add_argument("--strip", type=Path, default=None, help="image strip to write (default: in the bundle)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=quality)
    p = ev_sub.add_parser(
        "latency", help="the paper's Table 1: latency of each module alone and inside a running call",
        description="Times extract, encode, decode and generate alone on the avatar's demo clip, the "
        "transport alone over QUIC through the emulator at RTT 20 ms, then runs a loopback call (the demo) "
        "and reports each module's latency inside it and end to end, next to the paper's numbers.")
    p.add_argument("--avatar", type=existing_dir, default=None, help="avatar bundle (default: the bundled sample)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of the call (default 20)")
    p.add_argument("--resolution", type=int, default=None, help="render resolution (default: the avatar's)")
    p.add_argument("--out", type=Path, default=Path("latency_out"), help="where the call's outputs go")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=latency)
