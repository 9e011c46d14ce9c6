"""Analysis-by-synthesis enrollment: per-frame pose corrections of the training frames.

The tracker's head pose is good to a degree or two. An avatar trained on those poses
sees the same head point land on different pixels from frame to frame, and learns a
blur that averages them; on new frames it disagrees with the tracker again, most of
all at the silhouette (docs/experiments.md, "Where the gap is"). So, while the field trains, each
training frame's pose is refitted through the field as it stands, and the field goes
on learning from frames that line up with it.

The fit is the sender's (``pose_fit.PoseRefiner.fit``): a small render, and
Lucas-Kanade steps from its depth. So a correction means the same thing at enrollment
and in a call, and a sender that refines its poses sends what the avatar learned from.
Passes alternate with training (block-coordinate descent, as the per-frame FLAME
fits of Gaussian head avatars alternate with their Gaussians): at fixed points of
the run every training frame is refitted from its last correction, and a step size
(``rate``), an optional pull toward the tracker (``prior``) and the removal of their
common drift (``zero_mean``) keep the corrections from wandering with a field that is
still changing. Frames without a face keep none.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from nerfconf.avatar.bundle import AvatarBundle
from nerfconf.avatar.camera import HeadPose
from nerfconf.avatar.pose_fit import PoseRefiner, RefineSettings
from nerfconf.avatar.training.dataset import AvatarData
from nerfconf.face.pose import rotation_to_angles
from nerfconf.types import FaceParams

__all__ = ["AlignConfig", "TrainingPoses", "align_pass"]


@dataclass(frozen=True)
class AlignConfig:
    #: fractions of the run at which every training frame's pose is refitted (empty: never). A pass
    #: costs one small render per frame and step (about 140 ms a frame on a 30 GMAC/s core early in
    #: training, 3 minutes for cnn2's 1279 frames) and counts toward the time budget, so two: the
    #: second starts from the first's corrections, and the last half of the run trains on the result.
    at: tuple[float, ...] = (0.2, 0.45)
    #: Gauss-Newton steps per frame and pass (one render each)
    iterations: int = 1
    #: side of the renders fitted on, pixels
    resolution: int = 64
    #: fraction of each pass's change to a correction that is kept (the corrections' learning rate)
    rate: float = 1.0
    #: pull toward the tracker's pose (``RefineSettings.prior``). Off: even 0.01 held an injected
    #: 0.03 rad error at 0.023 (tests/avatar/test_align.py), since yaw and sideways shift look alike
    #: at the silhouette; the fit's bounds and the few passes keep the corrections near the tracker.
    prior: float = 0.0
    #: take the corrections' mean over the training frames out after each pass. A field and all its
    #: poses can move together and render the same (depth above all: a nearer head is a smaller one),
    #: so corrections drift as one; without this cnn2's drifted 4.4 mm nearer on average (spread 2 mm),
    #: and the receiver, driven by the tracker's poses, drew every held-out frame off by that much.
    zero_mean: bool = True

    def __post_init__(self) -> None:
        if any(not 0.0 < a < 1.0 for a in self.at) or list(self.at) != sorted(self.at):
            raise ValueError(f"alignment passes sit at increasing fractions of the run in (0, 1), got {self.at}")
        if not 0.0 < self.rate <= 1.0:
            raise ValueError(f"the alignment rate must be in (0, 1], got {self.rate}")

    def settings(self) -> RefineSettings:
        return RefineSettings(resolution=self.resolution, iterations=self.iterations, prior=self.prior,
                              warm_start=False)

    @classmethod
    def off(cls) -> AlignConfig:
        return cls(at=())


@dataclass
class TrainingPoses:
    """Each frame's tracked pose and the correction enrollment found for it.

    Poses are (yaw, pitch, roll) in radians and the head origin in camera space in
    metres, as the sender sends them; ``corrections`` is added to them.
    """

    #: (N, 6) the tracker's poses
    tracked: np.ndarray
    #: (N, 6) what enrollment adds to them
    corrections: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.corrections is None:
            self.corrections = np.zeros_like(self.tracked)
        if self.corrections.shape != self.tracked.shape:
            raise ValueError("corrections must have the shape of the tracked poses")

    @classmethod
    def of(cls, data: AvatarData) -> TrainingPoses:
        angles = np.stack([rotation_to_angles(r.astype(np.float64)) for r in data.rotations])
        return cls(np.concatenate([angles, data.translations.astype(np.float64)], axis=1))

    def pose(self, i: int) -> np.ndarray:
        return self.tracked[i] + self.corrections[i]

    def head_pose(self, i: int) -> HeadPose:
        """Frame ``i``'s corrected head pose."""
        return HeadPose.from_vector(self.pose(i))

    def summary(self, indices: np.ndarray) -> dict:
        c = np.abs(self.corrections[indices])
        return {"rotation_deg_median": round(float(np.degrees(np.median(c[:, :3]))), 3),
                "translation_mm_median": round(float(1e3 * np.median(c[:, 3:])), 3),
                "rotation_deg_p90": round(float(np.degrees(np.percentile(c[:, :3], 90))), 3),
                "translation_mm_p90": round(float(1e3 * np.percentile(c[:, 3:], 90)), 3)}


def align_pass(bundle: AvatarBundle, data: AvatarData, poses: TrainingPoses, config: AlignConfig,
               indices: np.ndarray, *, progress: bool = False) -> dict:
    """Refits the poses of frames ``indices`` through ``bundle``'s field, in place; says what it did."""
    t0 = time.perf_counter()
    refiner = PoseRefiner(bundle, config.settings())
    k = bundle.field.config.n_expression
    items = indices
    if progress:
        from tqdm import tqdm  # noqa: PLC0415

        items = tqdm(indices, unit="frame", desc="aligning training poses", leave=False)
    residuals = []
    for i in items:
        p = poses.tracked[i]
        params = FaceParams(data.expressions[i, :k].astype(np.float64), p[:3].copy(), p[3:].copy(), True, 0.0, int(i))
        fit = refiner.fit(params, data.images[i], start=poses.corrections[i])
        if np.isfinite(fit.residual):
            residuals.append(fit.residual)
        poses.corrections[i] += config.rate * (fit.correction - poses.corrections[i])
    drift = poses.corrections[indices].mean(axis=0) if len(indices) else np.zeros(6)
    if config.zero_mean:
        poses.corrections[indices] -= drift
    return {**poses.summary(indices), "seconds": round(time.perf_counter() - t0, 1),
            "mean_rotation_deg": [round(float(v), 3) for v in np.degrees(drift[:3])],
            "mean_translation_mm": [round(float(v), 3) for v in 1e3 * drift[3:]],
            "residual_mean": round(float(np.mean(residuals)), 6) if residuals else None}
