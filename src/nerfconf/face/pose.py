"""Rigid head pose from landmarks: weighted, robust similarity alignment.

Axes follow the OpenCV camera convention (x right, y down, z away from the
camera). A head pose maps the canonical head frame into the camera frame as
``x_cam = s R x_head + t``. Angles decompose ``R = Ry(yaw) Rx(pitch) Rz(roll)``:
positive yaw turns the face toward the image's left, positive pitch tilts it
down, positive roll turns it clockwise on screen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Similarity:
    scale: float
    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)

    def apply(self, points: np.ndarray) -> np.ndarray:
        return self.scale * points @ self.rotation.T + self.translation

    def invert(self, points: np.ndarray) -> np.ndarray:
        return (points - self.translation) @ self.rotation / self.scale


def fit_similarity(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> Similarity:
    """Least-squares ``dst ~ s R src + t`` (Umeyama 1991), with per-point weights."""
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    xs, xd = src - mu_s, dst - mu_d
    cov = (xd * w[:, None]).T @ xs
    u, d, vt = np.linalg.svd(cov)
    sign = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0  # a reflection fits better; the nearest rotation flips the weakest axis
    rotation = (u * sign) @ vt
    var_s = float(np.sum(w * np.sum(xs * xs, axis=1)))
    scale = float(np.sum(d * sign) / var_s)
    return Similarity(scale, rotation, mu_d - scale * rotation @ mu_s)


def fit_similarity_robust(
    src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None, iterations: int = 3
) -> Similarity:
    """Similarity refined by iteratively reweighted least squares with Huber weights.

    A few landmarks can be badly off (an occluding hand, a tracker glitch on
    the jaw line); Huber weights cap their pull on the pose.
    """
    base = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    fit = fit_similarity(src, dst, base)
    for _ in range(iterations):
        resid = np.linalg.norm(fit.apply(src) - dst, axis=1)
        k = 1.5 * max(np.median(resid), 1e-9)
        huber = np.where(resid <= k, 1.0, k / np.maximum(resid, 1e-12))
        fit = fit_similarity(src, dst, base * huber)
    return fit


def rotation_to_angles(r: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) in radians, for ``R = Ry(yaw) Rx(pitch) Rz(roll)``."""
    pitch = np.arcsin(np.clip(-r[1, 2], -1.0, 1.0))
    yaw = np.arctan2(r[0, 2], r[2, 2])
    roll = np.arctan2(r[1, 0], r[1, 1])
    return np.array([yaw, pitch, roll])


def angles_to_rotation(angles: np.ndarray) -> np.ndarray:
    yaw, pitch, roll = (float(a) for a in angles)
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return ry @ rx @ rz
