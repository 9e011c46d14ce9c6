"""Video files as a stream of :class:`~nerfconf.types.Frame` (decoded with PyAV)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from nerfconf.types import Frame

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class CropBox:
    """A square region of the source frame: top-left corner and side, in source pixels."""

    x0: int
    y0: int
    side: int

    def __post_init__(self) -> None:
        if self.side < 8:
            raise ValueError(f"crop side must be at least 8 pixels, got {self.side}")

    def _overlap(self, w: int, h: int) -> tuple[tuple[slice, slice], tuple[slice, slice]] | None:
        """(rows, cols) in the crop and in a w x h frame where the two overlap; None if nowhere."""
        xs, ys = max(0, self.x0), max(0, self.y0)
        xe, ye = min(w, self.x0 + self.side), min(h, self.y0 + self.side)
        if xe <= xs or ye <= ys:
            return None
        return ((slice(ys - self.y0, ye - self.y0), slice(xs - self.x0, xe - self.x0)),
                (slice(ys, ye), slice(xs, xe)))

    def apply(self, image: np.ndarray, size: int | None = None) -> np.ndarray:
        h, w = image.shape[:2]
        out = np.zeros((self.side, self.side, 3), np.uint8)
        if (overlap := self._overlap(w, h)) is not None:
            out[overlap[0]] = image[overlap[1]]
        if size is not None and size != self.side:
            import cv2  # noqa: PLC0415

            out = cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA if size < self.side else cv2.INTER_CUBIC)
        return out

    def coverage(self, frame_size: tuple[int, int], size: int | None = None) -> np.ndarray:
        """float32 (S, S) in [0, 1]: how much of each output pixel comes from the frame, not the black padding.

        ``frame_size`` is the source's (width, height); ``size`` the output side, as in :meth:`apply`.
        """
        inside = np.zeros((self.side, self.side), np.float32)
        if (overlap := self._overlap(*frame_size)) is not None:
            inside[overlap[0]] = 1.0
        if size is not None and size != self.side:
            import cv2  # noqa: PLC0415

            # Area averaging gives border pixels their covered fraction; never more than 1.
            inside = np.clip(cv2.resize(inside, (size, size), interpolation=cv2.INTER_AREA), 0.0, 1.0)
        return inside


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
    crop: CropBox | None = None,
) -> Iterator[Frame]:
    """Decodes frames ``start..stop`` as RGB uint8; ``size`` resizes to a square of that side.

    ``crop`` cuts a square out of every frame first (padding with black where
    it leaves the image), as enrollment does around a small face.

    ``fps`` resamples to a lower frame rate by keeping the first source frame
    at or after each tick, as a camera running at that rate would have seen.
    ``t_capture`` is the frame's presentation time in seconds, and ``index``
    its index in the source. A file that breaks partway raises
    :class:`VideoError` naming the frame, after the frames before it were yielded;
    one that ends cleanly before the frame count in its header logs a warning.
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
                if crop is not None:
                    image = crop.apply(frame.to_ndarray(format="rgb24"), size)
                else:
                    if size is not None:
                        frame = frame.reformat(width=size, height=size)
                    image = frame.to_ndarray(format="rgb24")
                yield Frame(image=image, t_capture=t, index=index)
            else:
                if info.frames and index + 1 < info.frames:
                    # a file cut short (a copy or a recording that stopped) decodes cleanly up to the cut
                    log.warning("%s: the video ends after %d of the %d frames its header lists (truncated?); "
                                "using those", info.path, index + 1, info.frames)
    except av.FFmpegError as exc:
        raise VideoError(f"{info.path}: decoding failed at frame {index + 1} ({exc})") from exc
    if index < start:
        raise VideoError(f"{info.path}: no frames to decode from frame {start} on")


def read_all(path: str | Path, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """All frames as one (N, H, W, 3) array, with their times."""
    frames = list(read_frames(path, **kwargs))
    return np.stack([f.image for f in frames]), np.array([f.t_capture for f in frames])
