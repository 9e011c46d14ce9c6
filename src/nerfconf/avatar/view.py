"""Where the receiver looks at the avatar from: the sender's pose, or a view of its own.

Pure geometry, no rendering. The sender's parameters place the head in its
camera: ``x_cam = R x_head + t`` (``nerfconf.face.pose``). A ``View`` turns the
head by extra yaw, pitch and roll about the head centre (the centre of the
avatar's head box), which is the same picture as the camera orbiting the head the
other way. Angles follow ``FaceParams.rotation``: positive yaw turns the face
toward the image's left, positive pitch tilts it down, positive roll turns it
clockwise on screen.

* ``view=None``: "true perspective", exactly the sender's rotation.
* ``View(yaw, pitch, roll)``: offsets added to the sender's rotation.
* ``View(..., absolute=True)``: the receiver's angles replace the sender's rotation
  (the head then only moves by its expression and translation).

Angles outside ±45° raise ``ViewError``; ``View.clamped`` clamps instead, for UIs
that drag the view around.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nerfconf.face.pose import angles_to_rotation

#: Largest view angle on any axis, in degrees.
MAX_VIEW_DEG = 45.0


class ViewError(ValueError):
    """A view angle is out of range or not a finite number."""


@dataclass(frozen=True)
class View:
    """A receiver-chosen view: degrees about the head centre (see the module docstring)."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    #: True: the angles replace the sender's rotation instead of adding to it
    absolute: bool = False

    def __post_init__(self) -> None:
        for name in ("yaw", "pitch", "roll"):
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.floating, np.integer)) or not np.isfinite(value):
                raise ViewError(f"view {name} must be a finite number of degrees, got {value!r}")
            if abs(value) > MAX_VIEW_DEG:
                raise ViewError(f"view {name} {value:g}° is outside ±{MAX_VIEW_DEG:g}°")

    @classmethod
    def clamped(cls, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0, absolute: bool = False) -> View:
        """The nearest valid view: each angle clamped into ±45° (NaN counts as 0)."""

        def clamp(v: float) -> float:
            v = float(np.nan_to_num(v, nan=0.0))
            return min(MAX_VIEW_DEG, max(-MAX_VIEW_DEG, v))

        return cls(clamp(yaw), clamp(pitch), clamp(roll), absolute)

    def rotation(self) -> np.ndarray:
        """The view's own rotation (3, 3), in the head-pose angle convention."""
        return angles_to_rotation(np.radians([self.yaw, self.pitch, self.roll]))


def orbit(frames: int, yaw_deg: float = 35.0, pitch_deg: float = 15.0) -> list[View]:
    """Views along a closed orbit: yaw swings once, pitch twice, both sinusoidally."""
    if frames < 1:
        raise ViewError(f"an orbit needs at least one frame, got {frames}")
    phase = 2 * np.pi * np.arange(frames) / frames
    return [View.clamped(yaw_deg * np.sin(p), pitch_deg * np.sin(2 * p)) for p in phase]
