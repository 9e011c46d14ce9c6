"""Writing an image file, with the failure said aloud."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_image(path: Path, rgb: np.ndarray) -> None:
    """Writes an (H, W, 3) uint8 RGB image in the format its extension names.

    OpenCV reports a full disk only by returning False, and an extension it has no encoder for
    with its own error: either way this raises ValueError naming the file, and removes what
    was half-written.
    """
    import cv2  # noqa: PLC0415

    try:
        written = cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    except cv2.error:
        raise ValueError(f"{path}: not an image file name OpenCV can write (use .png or .jpg)") from None
    if not written:
        Path(path).unlink(missing_ok=True)
        raise ValueError(f"{path}: could not write the image (is the disk full?)")
