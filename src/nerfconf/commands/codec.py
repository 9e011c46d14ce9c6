"""``nerfconf codec fit|encode|decode``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nerfconf.commands.common import (
    UserError,
    existing_file,
    load_track,
    sent_layout,
)
from nerfconf.commands.outputs import output_file, writing
from nerfconf.tracks import HELD_OUT_FRAMES  # numpy only: cheap enough for building the parser

STREAM_MAGIC = b"NFC1"


def _load_config(path: Path):
    from nerfconf.codec.config import CodecConfig

    try:
        return CodecConfig.from_json(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: {exc}") from exc


def fit(args: argparse.Namespace) -> int:
    output_file(args.output, args.track)
    from nerfconf.codec.config import Allocation, CodecConfig, Reference
    from nerfconf.codec.entropy import CoderId

    track = sent_layout(load_track(args.track), args.translation)
    if args.test_frames < 0:
        raise UserError(f"--test-frames {args.test_frames}: must be 0 or more")
    if len(track) <= args.test_frames:
        # the bounds would come from whatever sliver is left, silently: say so instead
        raise UserError(f"{args.track}: {len(track)} frames, not more than the {args.test_frames} held out for "
                        "testing; give --test-frames a smaller number (0 fits on every frame)")
    train = track.slice(0, len(track) - args.test_frames)
    rows = train.values[train.face_found]
    if len(rows) < 2:
        raise UserError(f"{args.track}: fewer than two frames with a face to fit bounds on")
    try:
        config = CodecConfig.fit(
            track.layout, rows, bits=args.bits, allocation=Allocation(args.allocation),
            coder=CoderId[args.coder.upper()],
            reference=Reference(args.reference),
            gop_frames=CodecConfig.gop_from_seconds(args.gop_seconds, track.fps or 20.0),
        )
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    with writing(args.output):
        args.output.write_text(config.to_json())
    print(f"wrote {args.output} (configuration tag {config.tag:04x}, fitted on {len(rows)} frames)")
    return 0


def encode(args: argparse.Namespace) -> int:
    output_file(args.output, args.track, args.config)
    from nerfconf.codec.encoder import ParamEncoder
    from nerfconf.codec.frame import stuff

    config = _load_config(args.config)
    track = sent_layout(load_track(args.track), config.layout.translation)
    if track.layout != config.layout:
        raise UserError(f"{args.track} has layout {track.layout}, the configuration expects {config.layout}")
    enc = ParamEncoder(config)
    with writing(args.output), open(args.output, "wb") as out:
        out.write(STREAM_MAGIC)
        for i in range(len(track)):
            out.write(stuff(enc.encode(track.params(i)).data))
    s = enc.stats
    seconds = len(track) / track.fps if track.fps else float("nan")
    print(f"wrote {args.output}: {s.frames} frames ({s.i_frames} I, {s.p_frames} P, {s.empty_frames} empty), "
          f"{s.bytes_total} bytes, {s.bytes_total * 8 / seconds / 1000:.2f} kbps, "
          f"{s.clamped_values} values clamped")
    return 0


def decode(args: argparse.Namespace) -> int:
    output_file(args.output, args.input, args.config)
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
    with writing(args.output):
        track.save(args.output)
    print(f"wrote {args.output}: {len(track)} frames")
    return 1 if errors else 0


def register(sub: argparse._SubParsersAction) -> None:
    codec = sub.add_parser("codec", help="fit, encode and decode parameter streams offline")
    codec_sub = codec.add_subparsers(dest="action", metavar="ACTION", required=True)
    p_fit = codec_sub.add_parser("fit", help="fit quantization bounds and coder priors on a track",
                               description="Writes the codec configuration both peers must share.")
    p_fit.add_argument("track", type=existing_file, help="parameter track (.npz)")
    p_fit.add_argument("-o", "--output", type=Path, required=True, help="configuration JSON to write")
    p_fit.add_argument("--translation", action="store_true", help="send head translation too")
    p_fit.add_argument("--bits", type=int, default=8,
                       help="quantization depth, 4..10 (default 8); with equal-step, of the widest component")
    p_fit.add_argument("--allocation", choices=["equal-step", "uniform"], default="equal-step",
                       help="equal-step: one step size for all expression components (default); "
                       "uniform: every dimension gets --bits, as in the paper")
    p_fit.add_argument("--coder", choices=["arithmetic", "exp_golomb"], default="arithmetic")
    p_fit.add_argument("--reference", choices=["prev", "anchor"], default="prev")
    p_fit.add_argument("--gop-seconds", type=float, default=1.0)
    p_fit.add_argument("--test-frames", type=int, default=HELD_OUT_FRAMES,
                       help=f"frames at the end not fitted on (default {HELD_OUT_FRAMES})")
    p_fit.set_defaults(func=fit)
    p_enc = codec_sub.add_parser("encode", help="code a track into a parameter stream file")
    p_enc.add_argument("track", type=existing_file)
    p_enc.add_argument("--config", type=existing_file, required=True, help="from `nerfconf codec fit`")
    p_enc.add_argument("-o", "--output", type=Path, required=True)
    p_enc.set_defaults(func=encode)
    p_dec = codec_sub.add_parser("decode", help="decode a parameter stream file into a track")
    p_dec.add_argument("input", type=existing_file)
    p_dec.add_argument("--config", type=existing_file, required=True, help="from `nerfconf codec fit`")
    p_dec.add_argument("-o", "--output", type=Path, required=True)
    p_dec.set_defaults(func=decode)
