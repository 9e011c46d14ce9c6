"""Live frame sources for a call: a camera, or a video file played as if it were one.

Every frame is stamped with ``time.monotonic()`` when it is captured. The
monotonic clock is shared by every process on a machine, so a loopback call
can measure latency end to end without clock sync.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nerfconf.capture.video import CropBox, VideoError, read_frames
from nerfconf.types import Frame


class CameraError(RuntimeError):
    """No camera at that index, or it stopped delivering frames."""


@dataclass(frozen=True)
class SourceSpec:
    """What the sender captures from: ``video`` (a file) or ``camera`` (an OpenCV index)."""

    video: Path | None = None
    camera: int | None = None
    fps: float = 20.0
    #: pace a file at the call's frame rate (a camera paces itself)
    paced: bool = True
    loop: bool = False
    size: int | None = None
    crop: CropBox | None = None

    def __post_init__(self) -> None:
        if (self.video is None) == (self.camera is None):
            raise ValueError("give exactly one of a video file or a camera index")
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")


def frames(spec: SourceSpec, stop: callable | None = None) -> Iterator[Frame]:
    """Frames as they are captured, numbered 0, 1, 2, ... at ``spec.fps``.

    A paced file keeps its frame numbers on the clock, as a camera does: frame ``n`` is captured
    at ``n / fps`` after the start. A reader that fell more than a frame behind skips frames
    (their numbers too) rather than send late ones under early numbers: the receiver's playout
    clock runs on those numbers, and a sender that drifted behind it had every frame arrive late.
    """
    source = _camera(spec) if spec.camera is not None else _video(spec)
    period = 1.0 / spec.fps
    start = time.monotonic()
    for n, image in enumerate(source):
        if stop is not None and stop():
            return
        if spec.paced:
            # Sleep to the tick rather than a fixed period, so decoding time does not add drift.
            delay = start + n * period - time.monotonic()
            if delay < -period:
                continue
            if delay > 0:
                time.sleep(delay)
        yield Frame(image=image, t_capture=time.monotonic(), index=n)


def _video(spec: SourceSpec) -> Iterator:
    while True:
        got = False
        for frame in read_frames(spec.video, fps=spec.fps, size=spec.size, crop=spec.crop):
            got = True
            yield frame.image
        if not got:
            raise VideoError(f"{spec.video}: no frames")
        if not spec.loop:
            return


def _camera(spec: SourceSpec) -> Iterator:
    import cv2  # noqa: PLC0415

    cap = cv2.VideoCapture(spec.camera)
    if not cap.isOpened():
        raise CameraError(f"no camera at index {spec.camera} (is one connected, and free?)")
    cap.set(cv2.CAP_PROP_FPS, spec.fps)
    try:
        misses = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                misses += 1
                if misses > 10:
                    raise CameraError(f"camera {spec.camera} stopped delivering frames")
                continue
            misses = 0
            image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if spec.crop is not None:
                image = spec.crop.apply(image, spec.size)
            elif spec.size is not None:
                image = cv2.resize(image, (spec.size, spec.size), interpolation=cv2.INTER_AREA)
            yield image
    finally:
        cap.release()
