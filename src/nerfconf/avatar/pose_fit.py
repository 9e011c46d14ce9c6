"""Sender-side pose refinement through the sender's own avatar (analysis by synthesis).

The landmark tracker's head pose is good to a degree or two, and the avatar was trained
on the same tracker's poses, whose errors it partly memorised. On a new frame the two
disagree, and most of the held-out error sits in a band around the head's silhouette
(docs/experiments.md, "Where the gap is"). The sender holds its own avatar and the camera frame the
receiver's render should match, so it can correct the pose before sending it: render
the avatar small, and take a Gauss-Newton step that moves the render onto the frame.

One step costs one low-resolution render. Its Jacobian needs no gradient through the
field: the render's depth places every pixel on the head's surface, and a small pose
change moves that point (and its colour) across the image, so the image changes by
``-grad(I) . du/dpose`` (Lucas-Kanade with the rendered image as template). Pixels just
outside the silhouette borrow the nearest head pixel's depth, so the silhouette's edges,
where the error is, drive the step. Both images are blurred first, which widens the
basin to a few pixels.

The correction (yaw, pitch, roll in radians, translation in metres) is added to the
tracker's pose, carried over to the next frame as its starting point (it changes slowly
from frame to frame), and bounded, so a frame it cannot explain never throws the head far.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import cv2
import numpy as np

from nerfconf.avatar.bundle import AvatarBundle
from nerfconf.avatar.camera import HeadPose
from nerfconf.avatar.rendering.fast import Renderer, RenderSettings
from nerfconf.types import FaceParams

__all__ = ["DEFAULT_REFINE_EVERY", "PoseFit", "PoseRefiner", "RefineError", "RefineSettings"]

#: A default sender fits every other frame: refinement lifts cnn2's held-out score by 2 dB, and the
#: frames between keep the last correction, which halves the cost (docs/RESULTS.md, "The avatar").
DEFAULT_REFINE_EVERY = 2

#: Internal units of the correction (rad, rad, rad, m, m, m), so one step treats all six alike.
_UNIT = 0.01
#: Pose step, in those units, for the numerical derivative of the projection (not of the render).
_PROBE = 0.1


class RefineError(ValueError):
    """The refiner was given something it cannot fit: names what is wrong."""


@dataclass(frozen=True)
class RefineSettings:
    #: side in pixels of the renders the pose is fitted on
    resolution: int = 64
    #: Gauss-Newton steps per frame, one render each
    iterations: int = 1
    #: Gaussian blur in pixels at 64 px (scaled with ``resolution``) of both images
    blur: float = 1.0
    #: Levenberg-Marquardt damping, relative to the normal matrix's diagonal
    damping: float = 1e-2
    #: pull of the total correction toward the tracker's pose (a Tikhonov term, relative to the
    #: normal matrix's mean diagonal); 0 by default, here and in enrollment (``avatar.align``), where
    #: even 0.01 held back a yaw error, since yaw and sideways shift look alike at the silhouette
    prior: float = 0.0
    #: start each frame from the previous frame's correction
    warm_start: bool = True
    #: fit every Nth frame only; the frames between take the last correction as it is (half the
    #: cost at 2, for about 0.2 dB on cnn2: the correction changes little in one frame)
    every: int = 1
    #: bounds of the total correction: radians per angle, metres per axis
    max_rotation: float = 0.1
    max_translation: float = 0.03

    def __post_init__(self) -> None:
        if not 16 <= self.resolution <= 512:
            raise RefineError(f"refinement resolution must be 16..512 pixels, got {self.resolution}")
        if not 1 <= self.iterations <= 20:
            raise RefineError(f"refinement iterations must be 1..20, got {self.iterations}")
        if not 0 <= self.blur <= 8:
            raise RefineError(f"refinement blur must be 0..8 pixels, got {self.blur}")
        if not 1 <= self.every <= 25:
            raise RefineError(f"refinement must fit every 1..25 frames, got every {self.every}")
        if self.every > 1 and not self.warm_start:
            raise RefineError("refining every few frames carries the correction over: it needs warm_start")
        if not (self.damping >= 0 and self.prior >= 0 and self.max_rotation > 0 and self.max_translation > 0):
            raise RefineError("refinement damping and prior must be >= 0 and its bounds > 0")


@dataclass
class PoseFit:
    params: FaceParams
    #: (6,) what was added to the tracker's pose: yaw, pitch, roll (rad), x, y, z (m)
    correction: np.ndarray
    #: mean squared error (blurred, 0..1 colour) of the last low-resolution render, before its step
    residual: float
    ms: float
    #: False on frames between fits, which take the last correction as it is
    fitted: bool = True


class PoseRefiner:
    """Corrects each frame's head pose so the avatar's render lands on the camera frame.

    ``refine(params, target)``: ``target`` is the frame as the avatar was trained to
    render it, the head on white at the bundle's crop (``face.segment``), any square size.
    Frames must come in order; call :meth:`reset` after a cut or a frame without a face.
    """

    def __init__(self, bundle: AvatarBundle, settings: RefineSettings | None = None,
                 *, threads: int | None = None) -> None:
        self.settings = settings or RefineSettings()
        s = self.settings.resolution
        # Upsampling guesses pixels between marched ones; the Jacobian wants every pixel's depth.
        self.renderer = Renderer(bundle, resolution=s, threads=threads,
                                 settings=RenderSettings(upsample_tolerance=0))
        f = self.renderer.focal
        ys, xs = np.mgrid[0:s, 0:s].astype(np.float64)
        rays = np.stack([(xs + 0.5 - s / 2) / f, (ys + 0.5 - s / 2) / f, np.ones_like(xs)], -1).reshape(-1, 3)
        self._rays = rays / np.linalg.norm(rays, axis=1, keepdims=True)
        bound = np.array([self.settings.max_rotation] * 3 + [self.settings.max_translation] * 3)
        self._bound = bound / _UNIT
        self._x = np.zeros(6)
        self._frame = 0

    def prewarm(self) -> None:
        self.renderer.prewarm()

    def reset(self) -> None:
        """Forgets the carried-over correction (a cut, a lost face)."""
        self._x = np.zeros(6)
        self._frame = 0

    @property
    def due(self) -> bool:
        """Whether the next frame with a face is fitted (and needs its target) or takes the last correction."""
        return self._frame % self.settings.every == 0

    def refine(self, params: FaceParams, target: np.ndarray | None) -> PoseFit:
        """The next frame of a stream; ``target`` may be None on frames that are not :attr:`due`."""
        t0 = time.perf_counter()
        if not params.face_found:
            self.reset()
            return PoseFit(params, np.zeros(6), float("nan"), (time.perf_counter() - t0) * 1e3, fitted=False)
        due = self.due
        if target is None and due:
            raise RefineError("this frame is fitted, so it needs its target image")
        base, translating = self._base(params)
        self._frame += 1
        if not due:
            x = self._x.copy()
            return PoseFit(_with_pose(params, base + x * _UNIT, translating), x * _UNIT, float("nan"),
                           (time.perf_counter() - t0) * 1e3, fitted=False)
        fit = self.fit(params, target, start=self._x * _UNIT if self.settings.warm_start else None)
        self._x = fit.correction / _UNIT
        return fit

    def fit(self, params: FaceParams, target: np.ndarray, start: np.ndarray | None = None) -> PoseFit:
        """One frame on its own: the correction from ``start`` (6,), or from none, after
        ``settings.iterations`` steps. The stream's carried-over state is left alone, so
        enrollment (``avatar.align``) refits its frames in any order with the sender's fit.
        """
        t0 = time.perf_counter()
        if not params.face_found:
            raise RefineError("a frame without a face has no pose to fit")
        base, translating = self._base(params)
        target = np.asarray(target)
        if (target.ndim != 3 or target.shape[2] != 3 or target.shape[0] != target.shape[1]
                or target.dtype != np.uint8):
            raise RefineError(f"the target must be a square (R, R, 3) uint8 image, got {target.shape} {target.dtype}")
        s, cfg = self.settings.resolution, self.settings
        sigma = cfg.blur * s / 64
        goal = _blur(cv2.resize(target, (s, s), interpolation=cv2.INTER_AREA).astype(np.float32) / 255, sigma)
        x = np.zeros(6)
        if start is not None:
            start = np.asarray(start, np.float64)
            if start.shape != (6,) or not np.isfinite(start).all():
                raise RefineError(f"a starting correction is 6 finite numbers, got {start}")
            x = np.clip(start / _UNIT, -self._bound, self._bound)
        free = np.arange(6) if translating else np.arange(3)
        if not translating:
            x[3:] = 0.0
        residual = float("nan")
        for _ in range(cfg.iterations):
            pose = base + x * _UNIT
            frame = self.renderer.render(_with_pose(params, pose, translating))
            image = _blur(frame.image.astype(np.float32) / 255, sigma)
            diff = (image - goal).reshape(-1)
            residual = float(np.mean(diff * diff))
            jac = self._jacobian(image, frame.depth, frame.alpha, pose)
            if jac is None:
                break
            a = jac[:, free].T @ jac[:, free]
            g = jac[:, free].T @ diff
            pull = cfg.prior * float(np.mean(np.diag(a)))
            lhs = a + cfg.damping * np.diag(np.diag(a)) + (pull + 1e-9) * np.eye(len(free))
            try:
                step = -np.linalg.solve(lhs, g + pull * x[free])
            except np.linalg.LinAlgError:
                break
            if not np.isfinite(step).all():
                break
            x[free] = np.clip(x[free] + step, -self._bound[free], self._bound[free])
        refined = _with_pose(params, base + x * _UNIT, translating)
        return PoseFit(refined, x * _UNIT, residual, (time.perf_counter() - t0) * 1e3)

    def _base(self, params: FaceParams) -> tuple[np.ndarray, bool]:
        """The tracker's pose (6,) and whether the stream carries translation."""
        translating = params.translation is not None
        base = np.concatenate([np.asarray(params.rotation, np.float64),
                               np.asarray(params.translation if translating else self.renderer.default_translation,
                                          np.float64)])
        if base.shape != (6,) or not np.isfinite(base).all():
            raise RefineError(f"the pose must be 3 finite angles and 3 finite coordinates, got {base}")
        return base, translating

    def _jacobian(self, image: np.ndarray, depth: np.ndarray, alpha: np.ndarray, pose: np.ndarray) -> np.ndarray | None:
        """d(render)/d(correction) (R*R*3, 6) by moving each pixel's surface point, or None without a head."""
        s = self.settings.resolution
        head = alpha > 0.5
        if head.sum() < 16:
            return None
        # Every pixel takes the depth of the nearest head pixel: the silhouette's outside moves with it.
        _, label = cv2.distanceTransformWithLabels((~head).astype(np.uint8), cv2.DIST_L2, 5,
                                                   labelType=cv2.DIST_LABEL_PIXEL)
        ys, xs = np.nonzero(head)
        by_label = np.zeros(int(label.max()) + 1, np.float64)
        by_label[label[ys, xs]] = depth[ys, xs]
        points_cam = self._rays * by_label[label].reshape(-1, 1)
        head = HeadPose.from_vector(pose)
        points_head = (points_cam - head.translation) @ head.rotation  # R.T @ (p - t), row-wise
        u0 = self._project(points_head, pose)
        gy, gx = np.gradient(image, axis=(0, 1))
        gx, gy = gx.reshape(-1, 3), gy.reshape(-1, 3)
        jac = np.empty((s * s * 3, 6))
        for j in range(6):
            moved = pose.copy()
            moved[j] += _PROBE * _UNIT
            du = (self._project(points_head, moved) - u0) / _PROBE
            # the render's content moves by du, so the image at a fixed pixel changes by -grad . du
            jac[:, j] = -(gx * du[:, :1] + gy * du[:, 1:]).reshape(-1)
        return jac

    def _project(self, points_head: np.ndarray, pose: np.ndarray) -> np.ndarray:
        p = HeadPose.from_vector(pose).apply(points_head)
        z = np.maximum(p[:, 2:], 1e-6)
        return p[:, :2] / z * self.renderer.focal


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma) if sigma > 0 else image


def _with_pose(params: FaceParams, pose: np.ndarray, translating: bool) -> FaceParams:
    return replace(params, rotation=pose[:3].copy(), translation=pose[3:].copy() if translating else None)
