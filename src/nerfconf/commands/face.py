"""``nerfconf face fit|extract``: the per-person face model and parameter extraction."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from nerfconf.commands.common import UserError, existing_dir, existing_file, load_face_model
from nerfconf.commands.outputs import output_dir, output_file, writing


def fit(args: argparse.Namespace) -> int:
    from nerfconf.capture.video import VideoError  # noqa: PLC0415
    from nerfconf.codec.config import CodecConfig  # noqa: PLC0415
    from nerfconf.face.enroll import fit_from_video  # noqa: PLC0415
    from nerfconf.types import ParamLayout  # noqa: PLC0415

    output_dir(args.output)
    try:
        model, params, times = fit_from_video(
            args.video, n_expression=args.k, test_frames=args.test_frames, hfov_deg=args.fov,
            smoothing=not args.no_smoothing, progress=True,
        )
    except (VideoError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    # The codec section of the bundle: bounds from the model, priors from the same frames.
    layout = ParamLayout(model.n_expression, translation=False)
    rows = params[np.all(np.isfinite(params), axis=1)][:, : layout.dims]
    fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 20.0
    codec = CodecConfig.fit(layout, rows, gop_frames=CodecConfig.gop_from_seconds(1.0, min(fps, 20.0)))
    with writing(args.output):
        model.save(args.output)
        (args.output / "codec.json").write_text(codec.to_json())
    found = int(np.all(np.isfinite(params), axis=1).sum())
    print(f"wrote {args.output}: face model with {model.n_expression} expression components "
          f"({100 * model.metadata['explained_variance']:.2f} % of landmark variance), fitted on {found} frames; "
          f"codec configuration tag {codec.tag:04x}")
    return 0


def extract(args: argparse.Namespace) -> int:
    from nerfconf.capture.video import VideoError  # noqa: PLC0415
    from nerfconf.face.extract import extract_video  # noqa: PLC0415

    output_file(args.output, args.video)
    model = load_face_model(args.model)
    try:
        track, extras = extract_video(args.video, model, smoothing=not args.no_smoothing, start=args.start,
                                      stop=args.stop, fps=args.fps, progress=True)
    except (VideoError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    with writing(args.output):
        track.save(args.output, extras)
    found = int(track.face_found.sum())
    lm = extras["landmarks_ms"]
    print(f"wrote {args.output}: {len(track)} frames, face found in {found} "
          f"({100 * found / len(track):.1f} %), median {np.median(lm):.1f} ms landmarks + "
          f"{np.median(extras['solve_ms'][track.face_found]):.2f} ms pose and expression per frame")
    return 0


def segment(args: argparse.Namespace) -> int:
    from nerfconf.capture.video import VideoError  # noqa: PLC0415
    from nerfconf.face.segment import write_head_video  # noqa: PLC0415

    output_file(args.output, args.video)
    try:
        with writing(args.output):
            stats = write_head_video(args.video, args.output, size=args.size, start=args.start, stop=args.stop,
                                     neck_margin=args.neck_margin, progress=True)
    except (VideoError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    print(f"wrote {args.output}: {stats.frames} head-only frames on white ({stats.width}x{stats.height}), "
          f"face found in {stats.frames_with_face}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    face = sub.add_parser("face", help="fit a person's face model; extract face parameters from video")
    face_sub = face.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = face_sub.add_parser(
        "fit", help="fit a face model (template, expression basis, bounds) from an enrollment video",
        description="Runs MediaPipe's face mesh over the video and fits the person's face model: a "
        "metric neutral template, the landmarks that pose is solved on, a K-component expression basis, "
        "and the per-dimension bounds the codec quantizes between. Writes face_model.json, "
        "face_model.safetensors and codec.json into the output directory.")
    p.add_argument("video", type=existing_file, help="enrollment video of the person, face to camera")
    p.add_argument("-o", "--output", type=Path, required=True, help="directory to write the model into")
    p.add_argument("-k", type=int, default=46, help="expression components (default 46, as in the paper)")
    p.add_argument("--test-frames", type=int, default=0,
                   help="frames at the end to leave out of fitting (500 for the paper's split)")
    p.add_argument("--fov", type=float, default=40.0,
                   help="assumed horizontal field of view of the camera in degrees (default 40)")
    p.add_argument("--no-smoothing", action="store_true",
                   help="fit bounds on raw parameters (use with `face extract --no-smoothing`)")
    p.set_defaults(func=fit)

    p = face_sub.add_parser(
        "extract", help="extract per-frame pose and expression coefficients from a video",
        description="Writes a parameter track (.npz): expression coefficients, head rotation and "
        "translation per frame, with face_found, plus the landmarks and timings of each frame.")
    p.add_argument("video", type=existing_file)
    p.add_argument("--model", type=existing_dir, required=True, help="directory from `nerfconf face fit`")
    p.add_argument("-o", "--output", type=Path, required=True, help="track file to write (.npz)")
    p.add_argument("--fps", type=float, default=None, help="resample to this frame rate first (the call uses 20)")
    p.add_argument("--start", type=int, default=0, help="first frame")
    p.add_argument("--stop", type=int, default=None, help="frame to stop before")
    p.add_argument("--no-smoothing", action="store_true", help="send raw tracker output (no One Euro filter)")
    p.set_defaults(func=extract)

    p = face_sub.add_parser(
        "segment", help="write the head-only video on a white background (what avatars train on)",
        description="Masks every frame to the head (face, hair, ears, neck to a margin below the chin; "
        "see docs/head_mask.md) and composites it on white, losslessly (libx264rgb, crf 0).")
    p.add_argument("video", type=existing_file)
    p.add_argument("-o", "--output", type=Path, required=True, help="video to write (.mp4)")
    p.add_argument("--size", type=int, default=None, help="resize frames to a square of this side first")
    p.add_argument("--start", type=int, default=0, help="first frame")
    p.add_argument("--stop", type=int, default=None, help="frame to stop before")
    p.add_argument("--neck-margin", type=float, default=0.1,  # face.segment.NECK_MARGIN (cv2-free here)
                   help="neck kept below the chin, in face heights (default 0.1, as enroll)")
    p.set_defaults(func=segment)
