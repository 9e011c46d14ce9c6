"""The demo's "camera": a short clip rendered once from the sample avatar.

The clip is driven by a parameter track extracted from the held-out end of the
sample avatar's own enrollment video (frames the avatar never trained on), so
the demo needs no camera and no other data, and the sender's extractor still
runs for real on every frame of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nerfconf.avatar.bundle import AvatarBundle
from nerfconf.face.extract import extract_video
from nerfconf.tracks import ParamTrack

DEMO_TRACK = "demo_track.npz"
DEMO_CLIP = "demo_clip.mp4"


def extract_demo_track(bundle: AvatarBundle, video: str | Path, *, frames: int, fps: float = 20.0) -> ParamTrack:
    """Parameters of the last ``frames`` frames (after resampling to ``fps``) of the enrollment video.

    Frames go through the bundle's crop at its resolution, exactly as enrollment
    saw them, so the translation lands where the avatar expects a head.
    """
    from nerfconf.capture.video import probe  # noqa: PLC0415

    info = probe(video)
    span = int(np.ceil(frames * info.fps / fps)) + 2
    start = max(0, info.frames - span)
    track, _ = extract_video(video, bundle.face_model, start=start, fps=fps, size=bundle.resolution,
                             crop=bundle.face_model.crop)
    track = track.slice(max(0, len(track) - frames), len(track))
    if not track.face_found.any():
        raise ValueError(f"{video}: no face in its last {frames} frames")
    return ParamTrack(track.layout, track.values, track.face_found, track.t - track.t[0],
                      f"demo track: {Path(video).name}")


def render_clip(bundle: AvatarBundle, track: ParamTrack, path: str | Path, *, progress: bool = True) -> Path:
    """Renders every frame of ``track`` with the avatar (pose included) into a lossless-ish mp4."""
    from nerfconf.avatar.rendering.fast import Renderer  # noqa: PLC0415
    from nerfconf.playout.sinks import VideoFileSink  # noqa: PLC0415

    renderer = Renderer(bundle)
    renderer.prewarm()
    items = range(len(track))
    if progress:
        from tqdm import tqdm  # noqa: PLC0415

        items = tqdm(items, unit="frame", desc="rendering the demo clip")
    fps = track.fps or 20.0
    with VideoFileSink(path, fps=fps, size=bundle.resolution, quality="high") as sink:
        last = None
        for i in items:
            params = track.params(i)
            if params.face_found:
                last = renderer.render(params).image
            sink.write(last if last is not None else np.full((bundle.resolution,) * 2 + (3,), 255, np.uint8))
    return Path(path)
