"""Head pose and camera: the one place where a transmitted pose becomes a camera in the head frame.

The sender's parameters place the head in its camera, ``x_cam = R x_head + t``, with R
from (yaw, pitch, roll) in radians (``face.pose.angles_to_rotation``) and t in metres
(``HeadPose``). The avatar is a field in the head frame, so it is rendered from the
same camera placed in that frame: axes ``R.T``, centre ``-R.T t`` (``Camera``).
Training, the renderers, the sender's pose fit, the viewer and evaluation all go
through these two types.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nerfconf.avatar.view import View
from nerfconf.face.pose import angles_to_rotation, rotation_to_angles


@dataclass(frozen=True)
class HeadPose:
    """Where the head is in the camera: ``x_cam = rotation @ x_head + translation``."""

    rotation: np.ndarray  # (3, 3) head axes -> camera axes
    translation: np.ndarray  # (3,) head origin in the camera, metres

    @classmethod
    def from_angles(cls, angles: np.ndarray, translation: np.ndarray) -> HeadPose:
        """From transmitted (yaw, pitch, roll) radians and a translation in metres."""
        return cls(angles_to_rotation(np.asarray(angles, np.float64)), np.asarray(translation, np.float64))

    @classmethod
    def from_vector(cls, pose: np.ndarray) -> HeadPose:
        """From the 6-vector (yaw, pitch, roll, tx, ty, tz) that the sender's pose fit corrects."""
        pose = np.asarray(pose, np.float64)
        return cls.from_angles(pose[:3], pose[3:6])

    def angles(self) -> np.ndarray:
        return rotation_to_angles(self.rotation)

    def vector(self) -> np.ndarray:
        return np.concatenate([self.angles(), self.translation])

    def apply(self, points_head: np.ndarray) -> np.ndarray:
        """Head-frame points (N, 3) in camera coordinates."""
        return points_head @ self.rotation.T + self.translation

    def viewed(self, view: View | None, head_centre: np.ndarray) -> HeadPose:
        """The pose a receiver renders for ``view`` (``avatar.view``): the head turned about
        ``head_centre`` (head-frame metres), which stays where the sender put it."""
        if view is None:
            return self
        r = view.rotation() if view.absolute else self.rotation @ view.rotation()
        c = np.asarray(head_centre, np.float64)
        return HeadPose(r, self.translation + self.rotation @ c - r @ c)


@dataclass(frozen=True)
class Camera:
    """A pinhole camera placed in the head frame, looking down its +z axis."""

    rotation: np.ndarray  # (3, 3) camera axes -> head axes
    centre: np.ndarray  # (3,) camera centre in the head frame, metres
    focal: float  # pixels
    resolution: int  # square image side, pixels

    @classmethod
    def of_pose(cls, pose: HeadPose, focal: float, resolution: int) -> Camera:
        """The camera that sees the head at ``pose``."""
        return cls(pose.rotation.T, -pose.rotation.T @ pose.translation, focal, resolution)

    def head_pose(self) -> HeadPose:
        """The head's pose in this camera (``of_pose``'s inverse)."""
        rot = self.rotation.T
        return HeadPose(rot, -rot @ self.centre)

    def rays(self, pixels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Origins and unit directions (M, 3) through pixel centres ``pixels`` (M, 2) as (x, y)."""
        c = self.resolution / 2.0
        cam = np.stack(
            [(pixels[:, 0] + 0.5 - c) / self.focal, (pixels[:, 1] + 0.5 - c) / self.focal, np.ones(len(pixels))],
            axis=1,
        )
        d = cam @ self.rotation.T
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        o = np.broadcast_to(self.centre, d.shape)
        return torch.from_numpy(np.ascontiguousarray(o, np.float32)), torch.from_numpy(d.astype(np.float32))

    def all_pixels(self) -> np.ndarray:
        ys, xs = np.mgrid[0 : self.resolution, 0 : self.resolution]
        return np.stack([xs.ravel(), ys.ravel()], axis=1)
