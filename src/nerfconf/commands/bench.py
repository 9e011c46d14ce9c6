"""``nerfconf bench``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nerfconf.commands.common import (
    MLP_PRECISIONS,
    UserError,
    add_training_options,
    apply_training_options,
    existing_file,
    load_track,
    sent_layout,
)

def codec(args: argparse.Namespace) -> int:
    from nerfconf.bench.codec import bench_codec

    if args.track is not None or args.synthetic:
        track = load_track(args.track)
    else:
        from nerfconf.bench.codec import extracted_track  # noqa: PLC0415

        video = args.data / "cnn2_25fps.mp4"
        if not video.is_file():
            raise UserError(f"{video} not found: point --data at the shared data, or use --track or --synthetic")
        track = extracted_track(video, progress=not args.json)
    track = sent_layout(track, args.translation)
    try:
        result = bench_codec(
            track,
            test_frames=args.test_frames,
            bits=args.bits,
            gop_seconds=args.gop_seconds,
            rtt_ms=args.rtt_ms,
            repeats=args.repeats,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    from rich.table import Table

    from nerfconf.ui import console as make_console

    table = Table(title=f"codec at {result['fps']:g} fps, {result['dims']} dims, {result['bits']} bits, "
                  f"GOP {result['gop_frames']} frames")
    for col in ("allocation", "coder", "reference", "acks", "payload kbps", "body kbps", "B/I-frame", "B/P-frame",
                "enc µs", "dec µs"):
        table.add_column(col, justify="right")
    for r in result["results"]:
        acks = "none" if r["ack_delay_frames"] is None else f"after {r['ack_delay_frames']} fr"
        if r["reference"] == "prev":
            acks = "-"
        table.add_row(r["allocation"], r["coder"], r["reference"], acks,
                      f"{r['payload_kbps']:.2f}", f"{r['body_kbps']:.2f}",
                      f"{r['bytes_per_i_frame']:.1f}", f"{r['bytes_per_p_frame']:.1f}",
                      f"{r['encode_us_median']:.0f}", f"{r['decode_us_median']:.0f}")
    console = make_console()
    console.print(table)
    console.print(f"source: {result['source']}; bounds fitted on {result['train_frames']} frames, "
                  f"measured on {result['test_frames']} held-out frames "
                  f"({100 * result['clamped_fraction']:.2f} % of values clamped)")
    for name, a in result["allocations"].items():
        err = a["quantization_error"]
        console.print(f"{name}: bits {a['bits']}; quantization error: expression {err['expression_l2_mean']:.3f} mm "
                      f"(L2 over all landmarks), rotation at most {err['rotation_deg_max']:.3f}°")
    return 0


def extract(args: argparse.Namespace) -> int:
    from nerfconf.bench.extract import MAIN_VIDEO, bench_extract  # noqa: PLC0415

    if not (args.data / MAIN_VIDEO).is_file():
        raise UserError(f"{args.data / MAIN_VIDEO} not found: point --data at the shared data directory")
    result = bench_extract(args.data, test_frames=args.test_frames, pose_trials=args.pose_trials,
                           progress=not args.json)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    from nerfconf.ui import console as make_console  # noqa: PLC0415

    make_console().print_json(json.dumps(result))
    return 0


def train(args: argparse.Namespace) -> int:
    from nerfconf.bench.train import bench_train  # noqa: PLC0415

    video = args.data / "cnn2_25fps.mp4"
    if not video.is_file():
        raise UserError(f"{video} not found: point --data at the shared data directory")
    apply_training_options(args)
    result = bench_train(video, resolution=args.resolution, iterations=args.iterations, repeats=args.repeats,
                         device=args.device,
                         bf16_mlp=MLP_PRECISIONS[args.mlp_precision])
    print(json.dumps(result, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="measure speed and bitrate of a module")
    bench_sub = bench.add_subparsers(dest="target", metavar="TARGET", required=True)
    bc = bench_sub.add_parser("codec", help="bitrate and speed of every coder and prediction mode",
                              description="Fits bounds and priors on the training frames of a track and "
                              "codes its held-out frames with each entropy coder and reference mode. "
                              "By default the track is extracted from cnn2_25fps.mp4 at 20 fps; the output's "
                              "source field says which track was used.")
    bc.add_argument("--track", type=existing_file, help="parameter track (.npz) from `nerfconf face extract`")
    bc.add_argument("--synthetic", action="store_true", help="use the synthetic stand-in track")
    bc.add_argument("--data", type=Path, default=Path("../shared/data"),
                    help="without --track: extract the real track of cnn2_25fps.mp4 from here (default ../shared/data)")
    bc.add_argument("--translation", action="store_true", help="send head translation too (52 dims)")
    bc.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    bc.add_argument("--bits", type=int, default=8, help="quantization depth, 4..10 (default 8)")
    bc.add_argument("--gop-seconds", type=float, default=1.0, help="GOP length in seconds (default 1)")
    bc.add_argument("--rtt-ms", type=float, default=20.0, help="round trip that delays acks (default 20)")
    bc.add_argument("--repeats", type=int, default=5, help="runs per mode; speeds are medians (default 5)")
    bc.add_argument("--test-frames", type=int, default=500, help="held-out frames at the end (default 500)")
    bc.set_defaults(func=codec)

    be = bench_sub.add_parser("extract", help="speed, fidelity, pose accuracy and robustness of face extraction",
                              description="Runs face extraction over the shared test videos: ms per frame, "
                              "landmark error of the fitted model on held-out frames for K = 8..46, pose "
                              "error on synthetic rotations, pose jitter, and robustness on other clips.")
    be.add_argument("--data", type=Path, default=Path("../shared/data"),
                    help="directory with cnn2_25fps.mp4 and the other test clips (default ../shared/data)")
    be.add_argument("--json", action="store_true", help="print one JSON object")
    be.add_argument("--test-frames", type=int, default=500, help="held-out frames at the end (default 500)")
    be.add_argument("--pose-trials", type=int, default=500, help="synthetic rotations to solve (default 500)")
    be.set_defaults(func=extract)

    bt = bench_sub.add_parser("train", help="avatar training speed: iterations and samples per second",
                              description="Trains the default avatar configuration on the first 200 frames of "
                              "cnn2_25fps.mp4 and reports medians over repeated timed runs after a warm-up.")
    bt.add_argument("--data", type=Path, default=Path("../shared/data"),
                    help="directory with cnn2_25fps.mp4 (default ../shared/data)")
    bt.add_argument("--resolution", type=int, default=256)
    bt.add_argument("--iterations", type=int, default=200, help="iterations per timed run (default 200)")
    bt.add_argument("--repeats", type=int, default=3)
    add_training_options(bt)
    bt.add_argument("--json", action="store_true", help="(the output is always JSON)")
    bt.set_defaults(func=train)
