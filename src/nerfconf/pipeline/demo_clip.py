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
from nerfconf.capture.video import read_frames
from nerfconf.face.extract import Extractor
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
    rows, found, times = [], [], []
    with Extractor(bundle.face_model) as extractor:
        for frame in read_frames(video, start=start, size=bundle.resolution, fps=fps, crop=bundle.face_model.crop):
            out = extractor.process(frame)
            rows.append(out.params.to_vector(extractor.layout))
            found.append(out.params.face_found)
            times.append(frame.t_capture)
        layout = extractor.layout
    rows, found, times = rows[-frames:], found[-frames:], times[-frames:]
    if not any(found):
        raise ValueError(f"{video}: no face in its last {frames} frames")
    t = np.asarray(times) - times[0]
    return ParamTrack(layout, np.asarray(rows), np.asarray(found), t, f"demo track: {Path(video).name}")


def render_clip(bundle: AvatarBundle, track: ParamTrack, path: str | Path, *, progress: bool = True) -> Path:
    """Renders every frame of ``track`` with the avatar (pose included) into a lossless-ish mp4."""
    from nerfconf.avatar.fast import Renderer  # noqa: PLC0415
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
