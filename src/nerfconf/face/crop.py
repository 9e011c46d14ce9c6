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
    return CropBox(_place(centre[0], side, image_size[0]), _place(centre[1], side, image_size[1]), side)


def _place(centre: float, side: int, extent: int) -> int:
    """The crop's start along one axis: centred on the head, but slid inside the frame where it fits.

    Padding is black, and black beside a dark suit reads as person to the segmenter,
    so a crop that can lie inside the frame does.
    """
    if side >= extent:
        return (extent - side) // 2
    return min(max(int(round(centre - side / 2)), 0), extent - side)


def model_framing(crop: CropBox | None, frame_size: tuple[int, int], model_size: tuple[int, int]) -> CropBox | None:
    """How to turn a live source's frames into the geometry a face model was fitted on.

    ``frame_size`` and ``model_size`` are (width, height). Frames of the model's
    size pass as they are (None). Otherwise the enrollment crop is used when it
    lies inside the frame (the same camera, or the enrollment video itself), and
    a centred square of the frame when not; the caller resizes the crop to the
    model's size.
    """
    w, h = frame_size
    if (w, h) == tuple(model_size):
        return None
    if crop is not None:
        if crop.x0 >= 0 and crop.y0 >= 0 and crop.x0 + crop.side <= w and crop.y0 + crop.side <= h:
            return crop
    side = min(w, h)
    return CropBox((w - side) // 2, (h - side) // 2, side)
