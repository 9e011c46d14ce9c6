"""The sender's Extract stage: frames in, face parameters out.

``Extractor`` is the streaming API the call pipeline uses, one frame at a
time. ``extract_video`` runs it over a file and writes a parameter track,
which is what ``nerfconf face extract`` does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nerfconf.capture.video import CropBox, probe, read_frames
from nerfconf.face.landmarks import N_LANDMARKS, FaceMeshDetector
from nerfconf.face.model import FaceModel
from nerfconf.face.smoothing import OneEuroFilter
from nerfconf.tracks import ParamTrack
from nerfconf.types import FaceParams, Frame, ParamLayout

log = logging.getLogger("nerfconf.face")


@dataclass
class Extraction:
    params: FaceParams
    #: (478, 3) pixels, None without a face
    landmarks: np.ndarray | None
    #: milliseconds spent per step of this frame
    timings: dict[str, float] = field(default_factory=dict)


class NoFaceReporter:
    """Reports a run of frames without a face once when it starts and once when it ends."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self._log = logger
        self._since: int | None = None
        self.runs = 0

    def update(self, index: int, found: bool) -> None:
        if not found and self._since is None:
            self._since = index
            self.runs += 1
            self._log.warning("no face found from frame %d on; sending 'no face' until it returns", index)
        elif found and self._since is not None:
            self._log.info("face back at frame %d after %d frame(s) without", index, index - self._since)
            self._since = None


class FaceTracker:
    """Landmarks to the parameter vectors a sender sends: pose and expression solved by the
    face model, then smoothed by a One Euro filter, which a frame without a face resets.

    The one definition of that step: the live extractor, ``extract_video`` and evaluation's
    held-out frames all run it, so what is scored is what a sender would send."""

    def __init__(self, model: FaceModel, *, smoothing: bool = True) -> None:
        self.model = model
        self._filter = OneEuroFilter(model.param_std) if smoothing else None

    def update(self, landmarks: np.ndarray | None, t_capture: float) -> np.ndarray | None:
        """The (K + 6) parameters of a frame's landmarks; None (and a reset) without a face."""
        if landmarks is None:
            if self._filter is not None:
                self._filter.reset()
            return None
        vector = self.model.params(landmarks)
        return vector if self._filter is None else self._filter(vector, t_capture)


class Extractor:
    """Landmarks, then pose and expression coefficients, smoothed by a One Euro filter (``FaceTracker``).

    The parameter layout always carries translation; the codec decides whether to send it.
    """

    def __init__(self, model: FaceModel, *, smoothing: bool = True, stream: bool = True,
                 min_confidence: float = 0.5) -> None:
        self.model = model
        self.layout = ParamLayout(model.n_expression, translation=True)
        self._detector = FaceMeshDetector(stream=stream, min_confidence=min_confidence)
        self._tracker = FaceTracker(model, smoothing=smoothing)
        self.reporter = NoFaceReporter()

    def process(self, frame: Frame) -> Extraction:
        h, w = frame.image.shape[:2]
        cam = self.model.camera
        if (w, h) != (cam.width, cam.height):
            raise ValueError(
                f"frame is {w}x{h} but the face model was fitted on {cam.width}x{cam.height} frames; "
                "resize the input or refit the model"
            )
        t0 = time.perf_counter()
        landmarks = self._detector.detect(frame.image)
        t1 = time.perf_counter()
        self.reporter.update(frame.index, landmarks is not None)
        vector = self._tracker.update(landmarks, frame.t_capture)
        if vector is None:
            params = FaceParams.no_face(self.layout, t_capture=frame.t_capture, index=frame.index)
            return Extraction(params, None, {"landmarks_ms": (t1 - t0) * 1e3, "solve_ms": 0.0})
        t2 = time.perf_counter()
        params = FaceParams.from_vector(vector, self.layout, t_capture=frame.t_capture, index=frame.index)
        return Extraction(params, landmarks, {"landmarks_ms": (t1 - t0) * 1e3, "solve_ms": (t2 - t1) * 1e3})

    def close(self) -> None:
        self._detector.close()

    def __enter__(self) -> Extractor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def detect_all(frames: Iterable[Frame], *, stream: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks of every frame (NaN rows without a face) and the frame times."""
    points, times = [], []
    reporter = NoFaceReporter()
    with FaceMeshDetector(stream=stream) as detector:
        for frame in frames:
            lm = detector.detect(frame.image)
            reporter.update(frame.index, lm is not None)
            points.append(lm if lm is not None else np.full((N_LANDMARKS, 3), np.nan))
            times.append(frame.t_capture)
    return np.stack(points), np.array(times)


def extract_video(
    path: str | Path,
    model: FaceModel,
    *,
    smoothing: bool = True,
    start: int = 0,
    stop: int | None = None,
    fps: float | None = None,
    size: int | None = None,
    crop: CropBox | None = None,
    progress: bool = False,
) -> tuple[ParamTrack, dict[str, np.ndarray]]:
    """Runs the extractor over a video; returns the track and per-frame landmarks and timings.

    ``fps`` resamples the video first (the call runs at 20 fps); ``crop`` and ``size`` frame
    it as the face model was fitted (``model.crop``, the avatar's resolution).
    """
    info = probe(path)
    frames = read_frames(path, start=start, stop=stop, fps=fps, size=size, crop=crop)
    if progress:
        from tqdm import tqdm  # noqa: PLC0415

        total = (min(stop, info.frames) if stop else info.frames) - start if info.frames else None
        if total and fps and info.fps:
            total = int(total * min(1.0, fps / info.fps))
        frames = tqdm(frames, total=total, unit="frame", desc=f"extracting {Path(path).name}")
    rows, found, times, landmarks, lm_ms, solve_ms = [], [], [], [], [], []
    with Extractor(model, smoothing=smoothing) as extractor:
        for frame in frames:
            out = extractor.process(frame)
            rows.append(out.params.to_vector(extractor.layout))
            found.append(out.params.face_found)
            times.append(frame.t_capture)
            landmarks.append(out.landmarks if out.landmarks is not None else np.full((N_LANDMARKS, 3), np.nan))
            lm_ms.append(out.timings["landmarks_ms"])
            solve_ms.append(out.timings["solve_ms"])
        layout = extractor.layout
    if not rows:
        raise ValueError(f"{path}: no frames in range {start}..{stop}")
    if not any(found):
        raise ValueError(f"{path}: no face found in any of its {len(rows)} frames")
    track = ParamTrack(layout, np.array(rows), np.array(found), np.array(times),
                       f"nerfconf face extract: {Path(path).name}")
    extras = {
        "landmarks": np.stack(landmarks).astype(np.float32),
        "landmarks_ms": np.array(lm_ms),
        "solve_ms": np.array(solve_ms),
    }
    return track, extras
