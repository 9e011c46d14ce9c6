"""``nerfconf view``: look at an avatar from any side while a parameter track plays."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from nerfconf.commands.common import (
    UserError,
    add_avatar_option,
    add_test_frames_option,
    add_video_option,
    existing_file,
)
from nerfconf.commands.outputs import output_file, writing


def avatar_track(avatar: Path, track: Path | None, video: Path | None, test_frames: int | None, bundle, *,
                 required: bool, progress: bool = False):
    """The frames to render: ``--track``, else the held-out track stored in the bundle, else
    the held-out frames of ``--video``; else (when not ``required``) one neutral frame."""
    import numpy as np  # noqa: PLC0415

    from nerfconf.avatar.bundle import HELDOUT_TRACK  # noqa: PLC0415
    from nerfconf.commands.common import load_track  # noqa: PLC0415
    from nerfconf.evaluate.quality import heldout_track  # noqa: PLC0415
    from nerfconf.tracks import ParamTrack  # noqa: PLC0415
    from nerfconf.types import ParamLayout  # noqa: PLC0415

    k = bundle.field.config.n_expression
    if track is None and (avatar / HELDOUT_TRACK).is_file():
        track = avatar / HELDOUT_TRACK
    if track is not None:
        t = load_track(track)
    elif video is not None:
        try:
            t = heldout_track(bundle, video, test_frames, progress)
        except ValueError as exc:
            raise UserError(str(exc)) from exc
    elif required:
        raise UserError(f"{avatar} holds no {HELDOUT_TRACK}: give --track or --video")
    else:
        return ParamTrack(ParamLayout(k), np.zeros((1, k + 3)), np.ones(1, bool), np.zeros(1), "neutral face")
    if t.layout.n_expression != k:
        raise UserError(f"the track has {t.layout.n_expression} expression coefficients, the avatar {k}")
    return t


def load_renderer(avatar: Path, resolution: int | None, device: str, threads: int | None = None):
    from nerfconf.avatar.bundle import AvatarBundle, BundleError  # noqa: PLC0415
    from nerfconf.avatar.rendering.fast import Renderer, RenderError  # noqa: PLC0415

    try:
        bundle = AvatarBundle.load(avatar)
        return bundle, Renderer(bundle, resolution, device, threads=threads)
    except (BundleError, RenderError) as exc:
        raise UserError(str(exc)) from exc


def view(args: argparse.Namespace) -> int:
    from nerfconf.playout import viewer  # noqa: PLC0415

    if args.strip is not None:
        output_file(args.strip, args.track, flag="--strip")
    else:
        output_file(args.output, args.track)
    bundle, renderer = load_renderer(args.avatar, args.resolution, args.device)
    track = avatar_track(args.avatar, args.track, args.video, args.test_frames, bundle, required=False,
                         progress=True)
    renderer.prewarm()
    if args.strip is not None:
        from nerfconf.image_file import write_image  # noqa: PLC0415

        image = viewer.orbit_strip(renderer, track.params(min(args.strip_frame, len(track) - 1)))
        try:
            write_image(args.strip, image)
        except ValueError as exc:
            raise UserError(str(exc)) from exc
        print(f"strip of views (yaw -45, 0, +45; pitch -30, +30) written to {args.strip}")
        return 0
    window = not args.headless and bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if window:
        try:
            import pygame  # noqa: F401, PLC0415
        except ImportError:
            print("nerfconf: no pygame (pip install 'nerfconf[view]'): writing a video instead")
            window = False
    if window:
        viewer.run_window(renderer, track, fps=args.fps)
        return 0
    with writing(args.output):
        path = viewer.write_orbit_video(renderer, track, args.output, frames=args.frames, fps=args.fps,
                                        yaw_deg=args.orbit_yaw, pitch_deg=args.orbit_pitch, progress=True)
    print(f"no display: orbit video of {args.frames or len(track)} frames written to {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "view", help="look at an avatar from any side while a parameter track plays",
        description="With a display (and pygame): a window where the arrow keys and mouse drags turn the view "
        "(q/e roll, a toggles an absolute view, r resets, Esc quits). Headless: an mp4 of the track played "
        "while the view orbits the head. Frames come from --track, else the bundle's heldout_track.npz, "
        "else the held-out frames of --video, else a neutral face.")
    add_avatar_option(p)
    p.add_argument("--track", type=existing_file, help="parameter track (.npz) from `nerfconf face extract`")
    add_video_option(p, help="the avatar's video: play its held-out frames")
    add_test_frames_option(p)
    p.add_argument("--resolution", type=int, default=None, help="output side in pixels (default: the bundle's)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--fps", type=float, default=25.0, help="playback and video frame rate (default 25)")
    p.add_argument("--headless", action="store_true", help="write the orbit video even when a display exists")
    p.add_argument("-o", "--output", type=Path, default=Path("view_orbit.mp4"),
                   help="headless: the video to write (default view_orbit.mp4)")
    p.add_argument("--frames", type=int, default=None, help="headless: frames to render (default: the track's)")
    p.add_argument("--orbit-yaw", type=float, default=35.0, help="orbit's yaw amplitude in degrees (default 35)")
    p.add_argument("--orbit-pitch", type=float, default=15.0, help="orbit's pitch amplitude in degrees (default 15)")
    p.add_argument("--strip", type=Path, default=None,
                   help="instead: write a PNG of one frame at yaw -45/0/+45 and pitch -30/+30, and exit")
    p.add_argument("--strip-frame", type=int, default=0, help="the track frame the strip shows (default 0)")
    p.set_defaults(func=view)
