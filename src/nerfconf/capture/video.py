"""Video files as a stream of :class:`~nerfconf.types.Frame` (decoded with PyAV)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from nerfconf.types import Frame


class VideoError(ValueError):
    """The file is missing, not a video, or cannot be decoded."""


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int
    height: int
    fps: float
    #: as the container reports it; may be 0 when unknown
    frames: int


def probe(path: str | Path) -> VideoInfo:
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or Fraction(0)
            return VideoInfo(path, stream.codec_context.width, stream.codec_context.height, float(rate),
                             int(stream.frames or 0))
    except av.FFmpegError as exc:
        raise VideoError(f"{path}: not a readable video ({exc})") from exc


def read_frames(
    path: str | Path,
    *,
    start: int = 0,
    stop: int | None = None,
    size: int | None = None,
    fps: float | None = None,
) -> Iterator[Frame]:
    """Decodes frames ``start..stop`` as RGB uint8; ``size`` resizes to a square of that side.

    ``fps`` resamples to a lower frame rate by keeping the first source frame
    at or after each tick, as a camera running at that rate would have seen.
    ``t_capture`` is the frame's presentation time in seconds, and ``index``
    its index in the source. A file that breaks partway raises
    :class:`VideoError` naming the frame, after the frames before it were yielded.
    """
    info = probe(path)
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    index = -1
    next_tick: float | None = None
    try:
        with av.open(str(info.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                index += 1
                if index < start:
                    continue
                if stop is not None and index >= stop:
                    break
                t = float(frame.time) if frame.time is not None else index / (info.fps or 25.0)
                if fps is not None:
                    if next_tick is None:
                        next_tick = t
                    if t + 1e-6 < next_tick:
                        continue
                    next_tick += 1.0 / fps
                if size is not None:
                    frame = frame.reformat(width=size, height=size)
                image = frame.to_ndarray(format="rgb24")
                yield Frame(image=image, t_capture=t, index=index)
    except av.FFmpegError as exc:
        raise VideoError(f"{info.path}: decoding failed at frame {index + 1} ({exc})") from exc
    if index < start:
        raise VideoError(f"{info.path}: no frames to decode from frame {start} on")


def read_all(path: str | Path, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """All frames as one (N, H, W, 3) array, with their times."""
    frames = list(read_frames(path, **kwargs))
    return np.stack([f.image for f in frames]), np.array([f.t_capture for f in frames])
