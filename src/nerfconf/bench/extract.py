"""``nerfconf bench extract``: speed, fidelity, pose accuracy and robustness of extraction.

* speed: per 512x512 frame of ``cnn2_25fps.mp4``, landmarks and the pose +
  expression solve, and separately the head segmentation;
* fidelity: landmarks rebuilt from pose + K coefficients against MediaPipe's
  own, on the held-out last 500 frames, with the model fitted on the rest;
* pose: known synthetic rotations of the template, with landmark noise and
  expressions, through the pose solver; and frame-to-frame jitter on video;
* robustness: every other clip, with the model fitted on its first half.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerfconf.capture.video import probe, read_frames
from nerfconf.face.enroll import fit_from_landmarks, smoothed_params
from nerfconf.face.landmarks import N_LANDMARKS, FaceMeshDetector
from nerfconf.face.model import FaceModel
from nerfconf.face.pose import Similarity, angles_to_rotation, rotation_to_angles
from nerfconf.tracks import HELD_OUT_FRAMES

MAIN_VIDEO = "cnn2_25fps.mp4"
ROBUSTNESS_VIDEOS = ("short_1.mp4", "short_2.mp4", "short_3.mp4", "short_4.mp4", "short_5.mp4", "d6.mp4", "d9.mp4")


@dataclass(frozen=True)
class ExtractSpeed:
    """Median ms per frame."""

    landmarks_median: float
    pose_and_expression_median: float
    #: landmarks plus the pose and expression solve: what the sender spends a frame
    extraction_median: float
    segmentation_median: float
    segmentation_frames: int


@dataclass(frozen=True)
class ExtractFidelity:
    """Mean 2D distance in px of model-rebuilt landmarks to MediaPipe's on the held-out frames."""

    held_out_frames: int
    fitted_frames: int
    #: by "K=<components>", each frame's own fit
    unsmoothed: dict[str, float]
    #: by "K=<the model's components>", from the smoothed parameters a sender transmits
    smoothed: dict[str, float]


@dataclass(frozen=True)
class PoseErrors:
    """Known synthetic rotations of the template through the pose solver, angle errors in degrees."""

    trials: int
    landmark_noise_px: float
    #: rotations drawn uniformly in +- these
    range_deg: dict[str, int]
    mean_angle_error_deg: float
    max_angle_error_deg: float
    #: by axis: yaw, pitch, roll
    mean_abs_error_deg: dict[str, float]


@dataclass(frozen=True)
class Spread:
    median: float
    p95: float


@dataclass(frozen=True)
class PoseBench:
    synthetic: PoseErrors
    #: frame-to-frame change of each angle (yaw, pitch, roll) on video, before and after smoothing
    jitter_raw_deg: dict[str, Spread]
    jitter_smoothed_deg: dict[str, Spread]
    jitter_fps: float


@dataclass(frozen=True)
class Robustness:
    """Another clip, with the model fitted on its first half and its second half extracted."""

    video: str
    frames: int
    face_found_rate: float
    n_expression: int
    #: share of the second half's values outside the bounds fitted on the first (None: no face there)
    outside_bounds_fraction: float | None
    outside_bounds_fraction_pose: float | None


@dataclass(frozen=True)
class ExtractBench:
    """``nerfconf bench extract``."""

    video: str
    #: "<width>x<height>"
    resolution: str
    frames: int
    face_found_rate: float
    speed_ms: ExtractSpeed
    fidelity_px: ExtractFidelity
    pose: PoseBench
    robustness: list[Robustness]


def _found(landmarks: np.ndarray) -> np.ndarray:
    return np.all(np.isfinite(landmarks.reshape(len(landmarks), -1)), axis=1)


def timed_landmarks(path: Path, progress=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Landmarks, times and per-frame ms of the face mesh; keeps a few frames for segmentation."""
    points, times, ms, keep = [], [], [], []
    with FaceMeshDetector(stream=True) as detector:
        for frame in read_frames(path):
            t0 = time.perf_counter()
            lm = detector.detect(frame.image)
            ms.append((time.perf_counter() - t0) * 1e3)
            points.append(lm if lm is not None else np.full((N_LANDMARKS, 3), np.nan))
            times.append(frame.t_capture)
            if frame.index % 8 == 0 and len(keep) < 200:
                keep.append(frame.image)
            if progress:
                progress()
    return np.stack(points), np.array(times), np.array(ms), keep


def rebuild_error_px(model: FaceModel, landmarks: np.ndarray, params: np.ndarray | None = None) -> float:
    """Mean 2D distance of model-rebuilt landmarks to the given ones.

    With ``params`` (smoothed) the rotation and coefficients come from them,
    while scale and position come from the frame's own fit.
    """
    errors = []
    k = model.n_expression
    for i, lm in enumerate(landmarks):
        pose = model.solve_pose(lm)
        if params is None:
            coeffs = model.coefficients(lm, pose)
        else:
            coeffs = params[i, :k]
            pose = Similarity(pose.scale, angles_to_rotation(params[i, k : k + 3]), pose.translation)
        rebuilt = model.reconstruct(coeffs, pose)
        errors.append(np.linalg.norm(rebuilt[:, :2] - lm[:, :2], axis=1).mean())
    return float(np.mean(errors))


def synthetic_pose_errors(model: FaceModel, trials: int, seed: int, noise_px: float = 0.5) -> PoseErrors:
    """Rotate the template (with a random expression), project, solve; angle errors in degrees."""
    rng = np.random.default_rng(seed)
    k = model.n_expression
    spread = (model.bounds_hi[:k] - model.bounds_lo[:k]) / 4
    geodesic, per_axis = [], []
    for _ in range(trials):
        angles = np.radians(rng.uniform([-30, -25, -20], [30, 25, 20]))
        coeffs = rng.normal(0, spread)
        shape = model.template + (coeffs @ model.basis).reshape(N_LANDMARKS, 3)
        truth = Similarity(rng.uniform(1.5, 4.0), angles_to_rotation(angles), np.r_[rng.uniform(150, 350, 2), 0])
        seen = truth.apply(shape) + rng.normal(0, noise_px, (N_LANDMARKS, 3))
        solved = model.solve_pose(seen)
        delta = solved.rotation @ truth.rotation.T
        geodesic.append(np.degrees(np.arccos(np.clip((np.trace(delta) - 1) / 2, -1, 1))))
        per_axis.append(np.degrees(np.abs(rotation_to_angles(solved.rotation) - angles)))
    per_axis = np.array(per_axis)
    return PoseErrors(
        trials=trials,
        landmark_noise_px=noise_px,
        range_deg={"yaw": 30, "pitch": 25, "roll": 20},
        mean_angle_error_deg=float(np.mean(geodesic)),
        max_angle_error_deg=float(np.max(geodesic)),
        mean_abs_error_deg=dict(zip(("yaw", "pitch", "roll"), per_axis.mean(axis=0).round(4).tolist())),
    )


def jitter_deg(params: np.ndarray, k: int) -> dict[str, Spread]:
    """Frame-to-frame change of each angle in degrees (median and 95th percentile), by axis."""
    rows = params[np.all(np.isfinite(params), axis=1)]
    step = np.degrees(np.abs(np.diff(rows[:, k : k + 3], axis=0)))
    return {
        axis: Spread(float(np.median(step[:, j])), float(np.percentile(step[:, j], 95)))
        for j, axis in enumerate(("yaw", "pitch", "roll"))
    }


def robustness(path: Path, n_expression: int) -> Robustness:
    from nerfconf.face.extract import detect_all  # noqa: PLC0415

    info = probe(path)
    landmarks, times = detect_all(read_frames(path))
    found = _found(landmarks)
    half = len(landmarks) // 2
    k = min(n_expression, int(found[:half].sum()) - 1)
    model, _ = fit_from_landmarks(landmarks[:half], times[:half], (info.width, info.height), n_expression=k)
    params = smoothed_params(model, landmarks, times, smoothing=True)
    second = params[half:][found[half:]]
    outside = (second < model.bounds_lo) | (second > model.bounds_hi)
    return Robustness(
        video=path.name,
        frames=len(landmarks),
        face_found_rate=float(found.mean()),
        n_expression=k,
        outside_bounds_fraction=float(outside.mean()) if second.size else None,
        outside_bounds_fraction_pose=float(outside[:, k : k + 3].mean()) if second.size else None,
    )


def bench_extract(data_dir: Path, *, test_frames: int = HELD_OUT_FRAMES, pose_trials: int = 500, seed: int = 0,
                  progress: bool = True) -> ExtractBench:
    from nerfconf.face.segment import HeadSegmenter  # noqa: PLC0415

    main = data_dir / MAIN_VIDEO
    info = probe(main)
    bar = None
    if progress:
        from tqdm import tqdm  # noqa: PLC0415

        bar = tqdm(total=info.frames or None, unit="frame", desc=f"landmarks {MAIN_VIDEO}")
    landmarks, times, lm_ms, sample = timed_landmarks(main, bar.update if bar else None)
    if bar:
        bar.close()
    found = _found(landmarks)
    n_train = len(landmarks) - test_frames
    model, _ = fit_from_landmarks(landmarks[:n_train], times[:n_train], (info.width, info.height))
    k = model.n_expression

    solve_ms = []
    for lm in landmarks[found]:
        t0 = time.perf_counter()
        model.params(lm)
        solve_ms.append((time.perf_counter() - t0) * 1e3)
    seg_ms = []
    with HeadSegmenter() as segmenter, FaceMeshDetector(stream=False) as detector:
        for image in sample:
            lm = detector.detect(image)
            t0 = time.perf_counter()
            segmenter.mask(image, lm)
            seg_ms.append((time.perf_counter() - t0) * 1e3)

    test = landmarks[n_train:][found[n_train:]]
    raw_params = smoothed_params(model, landmarks, times, smoothing=False)
    smooth_params = smoothed_params(model, landmarks, times, smoothing=True)
    fidelity = {f"K={kk}": rebuild_error_px(model.truncated(kk), test) for kk in (8, 16, 32, 46) if kk <= k}
    fidelity_smoothed = rebuild_error_px(model, test, smooth_params[n_train:][found[n_train:]])

    landmark_ms = float(statistics.median(lm_ms))
    solve = float(statistics.median(solve_ms))
    return ExtractBench(
        video=MAIN_VIDEO,
        resolution=f"{info.width}x{info.height}",
        frames=len(landmarks),
        face_found_rate=float(found.mean()),
        speed_ms=ExtractSpeed(
            landmarks_median=landmark_ms,
            pose_and_expression_median=solve,
            extraction_median=landmark_ms + solve,
            segmentation_median=float(statistics.median(seg_ms)),
            segmentation_frames=len(seg_ms),
        ),
        fidelity_px=ExtractFidelity(
            held_out_frames=int(len(test)),
            fitted_frames=int(found[:n_train].sum()),
            unsmoothed=fidelity,
            # keyed as unsmoothed is: the K is the fitted model's, which need not be 46
            smoothed={f"K={k}": fidelity_smoothed},
        ),
        pose=PoseBench(
            synthetic=synthetic_pose_errors(model, pose_trials, seed),
            jitter_raw_deg=jitter_deg(raw_params, k),
            jitter_smoothed_deg=jitter_deg(smooth_params, k),
            jitter_fps=round(info.fps, 3),
        ),
        robustness=[robustness(data_dir / name, k) for name in ROBUSTNESS_VIDEOS if (data_dir / name).exists()],
    )
