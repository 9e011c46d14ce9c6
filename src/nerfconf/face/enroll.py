"""Fitting a face model from an enrollment video (``nerfconf face fit``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nerfconf.capture.video import probe, read_frames
from nerfconf.face.extract import detect_all
from nerfconf.face.model import DEFAULT_HFOV_DEG, FaceModel, fit_face_model
from nerfconf.face.smoothing import OneEuroFilter


def smoothed_params(model: FaceModel, landmarks: np.ndarray, times: np.ndarray, smoothing: bool) -> np.ndarray:
    """Parameters of every frame as the streaming extractor computes them (NaN rows without a face)."""
    filt = OneEuroFilter(model.param_std) if smoothing else None
    out = np.full((len(landmarks), model.n_expression + 6), np.nan)
    for i, (lm, t) in enumerate(zip(landmarks, times)):
        if not np.all(np.isfinite(lm)):
            if filt is not None:
                filt.reset()
            continue
        v = model.params(lm)
        out[i] = filt(v, t) if filt is not None else v
    return out


def zero_phase_params(model: FaceModel, landmarks: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Parameters smoothed without lag, for offline use: the mean of the One Euro filter run
    forward and backward in time (NaN rows without a face).

    The streaming extractor cannot look ahead, so its filter lags the head a little. An avatar
    trained on those lagging poses learns the head a little off its place in the frame; trained
    on these it learns it where the frame shows it.
    """
    times = np.asarray(times, dtype=np.float64)
    forward = smoothed_params(model, landmarks, times, smoothing=True)
    backward = smoothed_params(model, landmarks[::-1], times[-1] - times[::-1], smoothing=True)[::-1]
    return 0.5 * (forward + backward)


def fit_from_video(
    path: str | Path,
    *,
    n_expression: int = 46,
    test_frames: int = 0,
    hfov_deg: float = DEFAULT_HFOV_DEG,
    smoothing: bool = True,
    progress: bool = False,
) -> tuple[FaceModel, np.ndarray, np.ndarray]:
    """Fits on all but the last ``test_frames`` frames.

    Returns the model, and the parameters (NaN rows without a face) and times
    of the frames it was fitted on.

    The bounds are taken over the parameters exactly as the (smoothing)
    extractor will produce them, so the codec's quantization range matches
    what it will be sent.
    """
    info = probe(path)
    stop = info.frames - test_frames if test_frames and info.frames else None
    if stop is not None and stop <= 0:
        raise ValueError(f"{path}: has {info.frames} frames, fewer than the {test_frames} held out")
    frames = read_frames(path, stop=stop)
    if progress:
        from tqdm import tqdm  # noqa: PLC0415

        frames = tqdm(frames, total=stop or info.frames or None, unit="frame", desc=f"landmarks {Path(path).name}")
    landmarks, times = detect_all(frames)
    try:
        model, params = fit_from_landmarks(
            landmarks, times, (info.width, info.height), n_expression=n_expression, hfov_deg=hfov_deg,
            smoothing=smoothing, metadata={"source": Path(path).name, "test_frames": test_frames},
        )
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return model, params, times


def fit_from_landmarks(
    landmarks: np.ndarray,
    times: np.ndarray,
    image_size: tuple[int, int],
    *,
    n_expression: int = 46,
    hfov_deg: float = DEFAULT_HFOV_DEG,
    smoothing: bool = True,
    metadata: dict | None = None,
) -> tuple[FaceModel, np.ndarray]:
    """The model and the parameters of the frames it was fitted on (NaN rows without a face)."""
    found = np.all(np.isfinite(landmarks.reshape(len(landmarks), -1)), axis=1)
    if not found.any():
        raise ValueError(f"no face found in any of the {len(landmarks)} enrollment frames")
    model = fit_face_model(landmarks, image_size, n_expression=n_expression, hfov_deg=hfov_deg,
                           metadata={**(metadata or {}), "smoothing": smoothing})
    params = smoothed_params(model, landmarks, times, smoothing)
    rows = params[found]
    model.bounds_lo, model.bounds_hi = rows.min(axis=0), rows.max(axis=0)
    return model, params
