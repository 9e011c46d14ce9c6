"""The demo's "camera": a real recording of the sample avatar's held-out frames.

``record_clip`` cuts the held-out end of the sample's enrollment video (frames the
avatar never trained on) around the head, as enrollment framed it, so the demo
needs no camera and no other data, and the tracker and the avatar are judged on a
real face, as a user's would be. ``obama.mp4`` is very likely a US federal
government work, and so public domain; ``../shared/data/README.md`` allows this
short crop to ship. ``extract_demo_track`` gives the same frames' parameter track.
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


def record_clip(bundle: AvatarBundle, video: str | Path, path: str | Path, *, max_seconds: float = 10.0) -> Path:
    """Writes the held-out end of ``video`` (``bundle.test_frames`` frames, at most ``max_seconds``),
    cropped and sized as enrollment framed it, at the video's own frame rate."""
    from nerfconf.capture.video import probe, read_frames  # noqa: PLC0415
    from nerfconf.playout.sinks import VideoFileSink  # noqa: PLC0415

    info = probe(video)
    fps = info.fps or 25.0
    frames = min(bundle.test_frames, int(max_seconds * fps))
    start = max(0, info.frames - frames)
    with VideoFileSink(path, fps=fps, size=bundle.resolution, quality="high") as sink:
        for frame in read_frames(video, start=start, size=bundle.resolution, crop=bundle.face_model.crop):
            sink.write(frame.image)
    if sink.frames == 0:
        raise ValueError(f"{video}: no frames from frame {start} on")
    return Path(path)
