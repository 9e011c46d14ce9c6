"""Concealment maths: poses between and after received frames.

Rotation moves along the geodesic between orientations (slerp), with the
angles read as ``R = Ry(yaw) Rx(pitch) Rz(roll)`` like :mod:`nerfconf.face.pose`;
expression and translation move linearly.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial.transform import Rotation

from nerfconf.types import FaceParams

#: scipy's intrinsic y-x-z sequence: R = Ry(yaw) Rx(pitch) Rz(roll)
EULER_ORDER = "YXZ"


def _rotation(angles: np.ndarray) -> Rotation:
    return Rotation.from_euler(EULER_ORDER, np.asarray(angles, np.float64))


def geodesic(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Angles a fraction ``t`` of the way from rotation ``a`` to ``b`` (t outside 0..1 extrapolates)."""
    ra, rb = _rotation(a), _rotation(b)
    step = Rotation.from_rotvec((rb * ra.inv()).as_rotvec() * t)
    return (step * ra).as_euler(EULER_ORDER)


def _lerp(a: np.ndarray | None, b: np.ndarray | None, t: float) -> np.ndarray | None:
    if a is None or b is None:
        return None if a is None else a.copy()
    return a + (b - a) * t


def _params(expression: np.ndarray, rotation: np.ndarray, translation: np.ndarray | None,
            t_capture: float, index: int) -> FaceParams:
    return FaceParams(expression, rotation, translation, True, t_capture, index)


def interpolate(a: FaceParams, b: FaceParams, index: int) -> FaceParams:
    """The pose of frame ``index`` between received frames ``a`` and ``b`` (a.index < index < b.index)."""
    t = (index - a.index) / (b.index - a.index)
    return _params(
        _lerp(a.expression, b.expression, t),  # type: ignore[arg-type]
        geodesic(a.rotation, b.rotation, t),
        _lerp(a.translation, b.translation, t),
        a.t_capture + (b.t_capture - a.t_capture) * t,
        index,
    )


def extrapolation_weight(steps: int, decay_frames: float) -> float:
    """How many frames' worth of the last motion frame ``last + steps`` moves on: n * exp(-n / decay).

    It follows the motion for the first frames, peaks at ``decay_frames``
    (decay / e frames' worth), then decays back toward the last good pose, so
    a long gap settles on that pose instead of drifting away.
    """
    return steps * math.exp(-steps / decay_frames) if decay_frames > 0 else 0.0


def extrapolate(prev: FaceParams | None, last: FaceParams, index: int, decay_frames: float,
                fps: float) -> FaceParams:
    """The pose of frame ``index`` after the last good frame, from the motion between ``prev`` and ``last``."""
    steps = index - last.index
    t_capture = last.t_capture + steps / fps
    if prev is None or not prev.face_found or prev.index >= last.index:
        return _params(last.expression.copy(), np.array(last.rotation, np.float64),
                       None if last.translation is None else last.translation.copy(), t_capture, index)
    # as a multiple of the prev -> last change (which spans last.index - prev.index frames)
    w = extrapolation_weight(steps, decay_frames) / (last.index - prev.index)
    translation = None
    if last.translation is not None and prev.translation is not None:
        translation = last.translation + (last.translation - prev.translation) * w
    return _params(
        last.expression + (last.expression - prev.expression) * w,
        geodesic(prev.rotation, last.rotation, 1.0 + w),
        translation,
        t_capture,
        index,
    )
