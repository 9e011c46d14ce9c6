"""``nerfconf eval``: quality and rate measurements of the whole system."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from nerfconf.commands.common import (
    REFINE_EVERY,
    UserError,
    add_avatar_option,
    add_json_option,
    add_test_frames_option,
    add_video_option,
    positive_int,
    refine_every,
)
from nerfconf.commands.outputs import output_dir, output_file
from nerfconf.evaluate.baselines import BASELINES, DEFAULT_OTHER_KBPS, DEFAULT_X265_KBPS
from nerfconf.report import to_json

if TYPE_CHECKING:  # torch comes with it: too slow to import for building the parser
    from nerfconf.evaluate.quality import QualityResult


def quality(args: argparse.Namespace) -> int:
    from nerfconf.avatar.bundle import BundleError  # noqa: PLC0415
    from nerfconf.capture.video import VideoError  # noqa: PLC0415
    from nerfconf.evaluate.quality import evaluate_quality  # noqa: PLC0415

    # never into the bundle: a bundle holds only what its enrollment made (and a committed sample stays as it is)
    strip = output_file(args.strip or Path(f"eval_strip_{args.avatar.resolve().name}.png"), flag="--strip")
    try:
        result = evaluate_quality(args.avatar, args.video, test_frames=args.test_frames, samples=args.samples,
                                  strip=strip, fast=args.fast or args.render_resolution is not None,
                                  render_resolution=args.render_resolution, refine_pose=args.refine_pose,
                                  refine_every=refine_every(args.refine_every), progress=True)  # bars go to stderr: --json stays clean
    except (BundleError, VideoError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    print(to_json(result) if args.json else _summary(result))
    return 0


def _summary(r: QualityResult) -> str:
    full, head, refined = r.full, r.head, r.pose_refinement
    return (f"{r.frames} held-out frames of {r.video} at {r.resolution} px (from frame {r.first_frame}):\n"
            f"  full frame   PSNR {full.psnr.mean:.2f} dB  SSIM {full.ssim.mean:.4f}  "
            f"LPIPS {full.lpips.mean:.4f}  (mean)\n"
            f"               PSNR {full.psnr.median:.2f} / {full.psnr.p10:.2f} dB  "
            f"SSIM {full.ssim.median:.4f} / {full.ssim.p10:.4f}  "
            f"LPIPS {full.lpips.median:.4f} / {full.lpips.p90:.4f}  (median / worst tenth)\n"
            f"  inside mask  PSNR {head.psnr.mean:.2f} dB  SSIM {head.ssim.mean:.4f}\n"
            f"  render {r.render_ms_median:.0f} ms/frame ({r.renderer}); strip: {r.strip}"
            + (f"\n  poses refined through the avatar: {refined.ms_median:.0f} ms/frame, "
               f"median correction {refined.rotation_deg_median:.2f} deg, "
               f"{refined.translation_mm_median:.1f} mm" if refined else ""))


def latency(args: argparse.Namespace) -> int:
    from nerfconf.avatar.bundle import BundleError  # noqa: PLC0415
    from nerfconf.bench.latency import latency_table_data  # noqa: PLC0415
    from nerfconf.pipeline.demo import SAMPLE  # noqa: PLC0415
    from nerfconf.pipeline.report import latency_table  # noqa: PLC0415
    from nerfconf.ui import console as make_console  # noqa: PLC0415

    output_dir(args.out, "--out")
    try:
        result = latency_table_data(args.avatar or SAMPLE, seconds=args.seconds, resolution=args.resolution,
                                    out=args.out, progress=not args.json)
    except (BundleError, ValueError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from exc
    if args.json:
        print(to_json(result))
        return 0
    make_console().print(latency_table(result.in_system, result.alone_ms,
                                       title="Latency per module (ms): this machine vs the paper (2x RTX 4090)"))
    return 0


def _rates(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of kbps: {text!r}") from exc
    if not rates or any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError(f"rates must be positive kbps, got {text!r}")
    return rates


def _codecs(text: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [n for n in names if n not in BASELINES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown codec(s) {bad}; choose from {', '.join(BASELINES)}")
    return names


def rd(args: argparse.Namespace) -> int:
    from nerfconf.avatar.bundle import BundleError  # noqa: PLC0415
    from nerfconf.capture.video import VideoError  # noqa: PLC0415
    from nerfconf.evaluate.ffmpeg import FFmpegError  # noqa: PLC0415
    from nerfconf.evaluate.lpips import LPIPSWeightsError  # noqa: PLC0415
    from nerfconf.evaluate.rd import (  # noqa: PLC0415
        RDOutput,
        RDSettings,
        run_rd,
        summarize,
        summary_markdown,
        write_report,
    )

    settings = RDSettings(frames=args.frames, test_frames=args.test_frames, codecs=args.codecs,
                          x265_kbps=args.x265_kbps, other_kbps=args.other_kbps,
                          stop_x265_when_better=not args.full_ladder, samples=args.samples, vmaf=not args.no_vmaf,
                          refine_pose=args.refine_pose, refine_every=refine_every(args.refine_every))
    out = output_dir(args.out, "--out") if args.out is not None else Path("rd") / args.avatar.name
    try:
        result = run_rd(args.avatar, args.video, out, settings, progress=not args.json)
        paths = write_report(result, out, grid=not args.no_grid)
    except (BundleError, VideoError, FFmpegError, LPIPSWeightsError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    summary = summarize(result)
    if args.json:
        print(to_json(RDOutput(summary, paths)))
    else:
        print(summary_markdown(summary))
        print("wrote " + ", ".join(str(v) for v in paths.values()))
    return 0


def _add_refinement_options(p: argparse.ArgumentParser) -> None:
    """What the scored sender does with its poses: the default sender's refinement, unless told not to."""
    p.add_argument("--refine-pose", action=argparse.BooleanOptionalAction, default=True,
                   help="correct each frame's head pose through the avatar first, as a default sender does (one "
                   "64 px render per fitted frame), and score what its receiver shows; --no-refine-pose scores "
                   "the tracker's poses, as a sender with --no-refine-pose sends them")
    p.add_argument("--refine-every", type=int, default=REFINE_EVERY, metavar="N",
                   help=f"fit every Nth frame only, as a sender with --refine-every N does (default {REFINE_EVERY})")


def register(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="measure the quality of an avatar and the whole system")
    ev_sub = ev.add_subparsers(dest="what", metavar="WHAT", required=True)
    p = ev_sub.add_parser(
        "quality", help="render an avatar's held-out frames and score them (PSNR, SSIM, LPIPS)",
        description="Renders the last --test-frames frames of the avatar's video from the parameters the "
        "sender would transmit, compares them with the head-only frames on white, and writes a strip of "
        "ground truth above avatar.")
    add_avatar_option(p)
    add_video_option(p, required=True)
    add_test_frames_option(p)
    p.add_argument("--samples", type=int, default=48, help="samples per ray of the reference renderer (default 48)")
    p.add_argument("--fast", action="store_true",
                   help="render with the receiver's fast renderer (within 40 dB of the reference, ~10x faster) "
                   "for quick comparisons; reported figures use the reference")
    p.add_argument("--render-resolution", type=int, default=None, metavar="PX",
                   help="render at PX with the fast renderer and scale up to the avatar's size, as a receiver on a "
                   "host too slow for full size does (implies --fast): what each smaller size costs in quality")
    _add_refinement_options(p)
    p.add_argument("--strip", type=Path, default=None,
                   help="image strip to write (default: eval_strip_NAME.png in the current directory, never in the bundle)")
    add_json_option(p)
    p.set_defaults(func=quality)
    p = ev_sub.add_parser(
        "latency", help="the paper's Table 1: latency of each module alone and inside a running call",
        description="Times extract, encode, decode and generate alone on the avatar's demo clip, the "
        "transport alone over QUIC through the emulator at RTT 20 ms, then runs a loopback call (the demo) "
        "and reports each module's latency inside it and end to end, next to the paper's numbers.")
    add_avatar_option(p, required=False, help="avatar bundle (default: the bundled sample)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of the call (default 20)")
    p.add_argument("--resolution", type=int, default=None, help="render resolution (default: the avatar's)")
    p.add_argument("--out", type=Path, default=Path("latency_out"), help="where the call's outputs go")
    add_json_option(p)
    p.set_defaults(func=latency)
    p = ev_sub.add_parser(
        "rd", help="quality against bitrate: the avatar next to x265, VVC, x264 and SVT-AV1 (paper's Fig. 4)",
        description="Builds the head-on-white reference of the held-out frames (played at 20 fps), encodes it "
        "with each codec over a ladder of rates (measuring the real bitrate of each stream), drives the avatar "
        "with the transmitted parameters (float32, Exp-Golomb and arithmetic-coded), and scores every frame "
        "with PSNR, SSIM, LPIPS and VMAF on full frames and inside the head mask. Writes a CSV, per-frame "
        "JSON, a summary, one RD plot per metric and a frame grid into --out. Results are cached there.")
    add_avatar_option(p)
    add_video_option(p, required=True)
    p.add_argument("--frames", type=positive_int, default=None,
                   help="use only the first N held-out frames (rendering costs about a second a frame per "
                   "stream on a CPU; default: all)")
    add_test_frames_option(p)
    p.add_argument("--out", type=Path, default=None, help="output and cache directory (default rd/<avatar name>)")
    p.add_argument("--codecs", type=_codecs, default=tuple(BASELINES),
                   help=f"comma-separated baselines (default {','.join(BASELINES)})")
    p.add_argument("--x265-kbps", type=_rates, default=DEFAULT_X265_KBPS,
                   help="x265 ladder of requested kbps, climbed until two points in a row beat the avatar on every metric")
    p.add_argument("--other-kbps", type=_rates, default=DEFAULT_OTHER_KBPS,
                   help="requested kbps for the other codecs (default 1,5,10,20: their lowest rates)")
    p.add_argument("--full-ladder", action="store_true", help="encode the whole x265 ladder, not stopping early")
    p.add_argument("--samples", type=positive_int, default=48, help="samples per ray of the reference renderer")
    p.add_argument("--no-vmaf", action="store_true", help="skip VMAF (the other metrics are still computed)")
    p.add_argument("--no-grid", action="store_true", help="do not write the frame grid")
    _add_refinement_options(p)
    add_json_option(p, "print one JSON object (no progress bars)")
    p.set_defaults(func=rd)
