"""Choosing one fixed square crop around the head for a whole video.

The crop is fixed rather than tracking the head: the avatar learns head
motion as camera motion, and a crop that followed the head would hide it.
"""

from __future__ import annotations

import numpy as np

from nerfconf.capture.video import CropBox
from nerfconf.face.landmarks import CHIN, FOREHEAD_TOP

#: crop side in face heights (landmark 10 to 152): room for hair above and the neck below
CROP_FACE_HEIGHTS = 1.7
#: the crop centre sits this many face heights above the face centre, for the hair
CROP_RAISE = 0.1


def head_crop(landmarks: np.ndarray, image_size: tuple[int, int]) -> CropBox:
    """A square covering where the head goes over the whole video.

    Uses the median face centre and size (robust to a few bad frames); the
    side is grown by how far the centre wanders, so the head stays inside.
    """
    found = np.all(np.isfinite(landmarks.reshape(len(landmarks), -1)), axis=1)
    if not found.any():
        raise ValueError("no face found in the video, so no crop around it")
    pts = landmarks[found]
    centres = pts[:, :468, :2].mean(axis=1)
    heights = np.linalg.norm(pts[:, CHIN, :2] - pts[:, FOREHEAD_TOP, :2], axis=1)
    height = float(np.median(heights))
    centre = np.median(centres, axis=0) - np.array([0.0, CROP_RAISE * height])
    wander = float(np.percentile(np.abs(centres - np.median(centres, axis=0)), 95, axis=0).max())
    side = int(round(CROP_FACE_HEIGHTS * height + 2 * wander))
    side = min(side, max(image_size))
    x0 = int(round(centre[0] - side / 2))
    y0 = int(round(centre[1] - side / 2))
    return CropBox(x0, y0, side)
