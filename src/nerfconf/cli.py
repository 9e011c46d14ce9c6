"""The ``nerfconf`` command: one entry point for every user-facing job."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from nerfconf import __version__

STREAM_MAGIC = b"NFC1"


class UserError(Exception):
    """A problem the user can fix; printed without a traceback."""


def _existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {path}")
    return path


# -- bench ------------------------------------------------------------------------------


def _load_track_or_synthetic(path: Path | None):
    from nerfconf.tracks import ParamTrack, synthetic_track

    if path is None:
        return synthetic_track(2000)
    try:
        return ParamTrack.load(path)
    except ValueError as exc:
        raise UserError(str(exc)) from exc


def cmd_bench_codec(args: argparse.Namespace) -> int:
    from nerfconf.bench.codec import bench_codec

    track = _load_track_or_synthetic(args.track)
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
    from nerfconf.ui import console as make_console
    from rich.table import Table

    table = Table(title=f"codec at {result['fps']:g} fps, {result['dims']} dims, {result['bits']} bits, "
                  f"GOP {result['gop_frames']} frames")
    for col in ("coder", "reference", "acks", "payload kbps", "body kbps", "B/I-frame", "B/P-frame",
                "enc µs", "dec µs"):
        table.add_column(col, justify="right")
    for r in result["results"]:
        acks = "none" if r["ack_delay_frames"] is None else f"after {r['ack_delay_frames']} fr"
        if r["reference"] == "prev":
            acks = "-"
        table.add_row(r["coder"], r["reference"], acks, f"{r['payload_kbps']:.2f}", f"{r['body_kbps']:.2f}",
                      f"{r['bytes_per_i_frame']:.1f}", f"{r['bytes_per_p_frame']:.1f}",
                      f"{r['encode_us_median']:.0f}", f"{r['decode_us_median']:.0f}")
    console = make_console()
    console.print(table)
    console.print(f"source: {result['source']}; bounds fitted on {result['train_frames']} frames, "
                  f"measured on {result['test_frames']} held-out frames "
                  f"({100 * result['clamped_fraction']:.2f} % of values clamped)")
    return 0


# -- codec ------------------------------------------------------------------------------


def _load_config(path: Path):
    from nerfconf.codec.config import CodecConfig

    try:
        return CodecConfig.from_json(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: {exc}") from exc


def cmd_codec_fit(args: argparse.Namespace) -> int:
    from nerfconf.codec.config import CodecConfig, Reference
    from nerfconf.codec.entropy import CoderId

    track = _load_track_or_synthetic(args.track)
    train = track.slice(0, max(2, len(track) - args.test_frames))
    rows = train.values[train.face_found]
    if len(rows) < 2:
        raise UserError(f"{args.track}: fewer than two frames with a face to fit bounds on")
    try:
        config = CodecConfig.fit(
            track.layout, rows, bits=args.bits, coder=CoderId[args.coder.upper()],
            reference=Reference(args.reference),
            gop_frames=CodecConfig.gop_from_seconds(args.gop_seconds, track.fps or 20.0),
        )
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    args.output.write_text(config.to_json())
    print(f"wrote {args.output} (configuration tag {config.tag:04x}, fitted on {len(rows)} frames)")
    return 0


def cmd_codec_encode(args: argparse.Namespace) -> int:
    from nerfconf.codec.encoder import ParamEncoder
    from nerfconf.codec.frame import stuff

    config = _load_config(args.config)
    track = _load_track_or_synthetic(args.track)
    if track.layout != config.layout:
        raise UserError(f"{args.track} has layout {track.layout}, the configuration expects {config.layout}")
    enc = ParamEncoder(config)
    with open(args.output, "wb") as out:
        out.write(STREAM_MAGIC)
        for i in range(len(track)):
            out.write(stuff(enc.encode(track.params(i)).data))
    s = enc.stats
    seconds = len(track) / track.fps if track.fps else float("nan")
    print(f"wrote {args.output}: {s.frames} frames ({s.i_frames} I, {s.p_frames} P, {s.empty_frames} empty), "
          f"{s.bytes_total} bytes, {s.bytes_total * 8 / seconds / 1000:.2f} kbps, "
          f"{s.clamped_values} values clamped")
    return 0


def cmd_codec_decode(args: argparse.Namespace) -> int:
    import numpy as np

    from nerfconf.codec.decoder import ParamDecoder
    from nerfconf.codec.errors import BitstreamError
    from nerfconf.codec.frame import StreamDeframer
    from nerfconf.tracks import ParamTrack

    config = _load_config(args.config)
    data = args.input.read_bytes()
    if not data.startswith(STREAM_MAGIC):
        raise UserError(f"{args.input} is not a nerfconf parameter stream (no {STREAM_MAGIC!r} header)")
    dec = ParamDecoder(config)
    rows, faces, times, errors = [], [], [], []
    for item in StreamDeframer().feed(data[len(STREAM_MAGIC):]):
        try:
            if isinstance(item, BitstreamError):
                raise item
            out = dec.decode(item)
        except BitstreamError as exc:
            errors.append(str(exc))
            continue
        rows.append(out.params.to_vector(config.layout))
        faces.append(out.params.face_found)
        times.append(out.params.t_capture)
    if errors:
        print(f"{len(errors)} frame(s) could not be decoded; first: {errors[0]}", file=sys.stderr)
    if not rows:
        raise UserError(f"{args.input}: no decodable frames")
    track = ParamTrack(config.layout, np.array(rows), np.array(faces), np.array(times),
                       f"decoded from {args.input.name}")
    track.save(args.output)
    print(f"wrote {args.output}: {len(track)} frames")
    return 1 if errors else 0


# -- demo -------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from nerfconf.demo import run_codec_demo

    try:
        run_codec_demo(loss=args.loss, seconds=args.seconds, seed=args.seed)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    return 0


# -- parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nerfconf",
        description="3D video calls at ultra-low bitrate: send ~50 face parameters per frame, "
        "render them with the peer's NeRF head avatar.",
    )
    parser.add_argument("--version", action="version", version=f"nerfconf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser("demo", help="run the demo (for now: the parameter codec over a lossy channel)",
                          description="Codes a face-parameter track, sends it over a simulated lossy "
                          "channel in each transport mode, and reports what arrived.")
    demo.add_argument("--loss", type=float, default=0.10, help="random packet loss, 0..1 (default 0.10)")
    demo.add_argument("--seconds", type=float, default=30.0, help="length of the call (default 30)")
    demo.add_argument("--seed", type=int, default=1, help="seed of the loss pattern")
    demo.set_defaults(func=cmd_demo)

    bench = sub.add_parser("bench", help="measure speed and bitrate of a module")
    bench_sub = bench.add_subparsers(dest="target", metavar="TARGET", required=True)
    bc = bench_sub.add_parser("codec", help="bitrate and speed of every coder and prediction mode",
                              description="Fits bounds and priors on the training frames of a track and "
                              "codes its held-out frames with each entropy coder and reference mode. "
                              "Without --track a synthetic track is used, and the output says so.")
    bc.add_argument("--track", type=_existing_file, help="parameter track (.npz) from `nerfconf face extract`")
    bc.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    bc.add_argument("--bits", type=int, default=8, help="quantization depth, 4..10 (default 8)")
    bc.add_argument("--gop-seconds", type=float, default=1.0, help="GOP length in seconds (default 1)")
    bc.add_argument("--rtt-ms", type=float, default=20.0, help="round trip that delays acks (default 20)")
    bc.add_argument("--repeats", type=int, default=5, help="runs per mode; speeds are medians (default 5)")
    bc.add_argument("--test-frames", type=int, default=500, help="held-out frames at the end (default 500)")
    bc.set_defaults(func=cmd_bench_codec)

    codec = sub.add_parser("codec", help="fit, encode and decode parameter streams offline")
    codec_sub = codec.add_subparsers(dest="action", metavar="ACTION", required=True)
    fit = codec_sub.add_parser("fit", help="fit quantization bounds and coder priors on a track",
                               description="Writes the codec configuration both peers must share.")
    fit.add_argument("track", type=_existing_file, help="parameter track (.npz)")
    fit.add_argument("-o", "--output", type=Path, required=True, help="configuration JSON to write")
    fit.add_argument("--bits", type=int, default=8, help="quantization depth, 4..10 (default 8)")
    fit.add_argument("--coder", choices=["arithmetic", "exp_golomb"], default="arithmetic")
    fit.add_argument("--reference", choices=["prev", "anchor"], default="prev")
    fit.add_argument("--gop-seconds", type=float, default=1.0)
    fit.add_argument("--test-frames", type=int, default=500, help="frames at the end not fitted on")
    fit.set_defaults(func=cmd_codec_fit)
    enc = codec_sub.add_parser("encode", help="code a track into a parameter stream file")
    enc.add_argument("track", type=_existing_file)
    enc.add_argument("--config", type=_existing_file, required=True, help="from `nerfconf codec fit`")
    enc.add_argument("-o", "--output", type=Path, required=True)
    enc.set_defaults(func=cmd_codec_encode)
    dec = codec_sub.add_parser("decode", help="decode a parameter stream file into a track")
    dec.add_argument("input", type=_existing_file)
    dec.add_argument("--config", type=_existing_file, required=True, help="from `nerfconf codec fit`")
    dec.add_argument("-o", "--output", type=Path, required=True)
    dec.set_defaults(func=cmd_codec_decode)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UserError as exc:
        print(f"nerfconf: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nerfconf: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
