import numpy as np

from nerfconf.capture.video import CropBox
from nerfconf.face.crop import head_crop, model_framing
from nerfconf.face.landmarks import CHIN, FOREHEAD_TOP


def test_live_frames_are_framed_like_the_face_model_saw_them():
    crop = CropBox(100, 20, 300)
    assert model_framing(crop, (256, 256), (256, 256)) is None  # already the model's geometry
    assert model_framing(crop, (640, 480), (256, 256)) == CropBox(100, 20, 300)  # enrollment crop fits
    assert model_framing(crop, (320, 240), (256, 256)) == CropBox(40, 0, 240)  # it does not: centre square
    assert model_framing(None, (844, 844), (128, 128)) == CropBox(0, 0, 844)


def _face_at(centre_xy: tuple[float, float], height: float, frames: int = 5) -> np.ndarray:
    """Landmarks of a still face: the mesh spread around ``centre_xy``, chin and forehead ``height`` apart."""
    rng = np.random.default_rng(0)
    lm = np.zeros((frames, 478, 3))
    lm[:, :, :2] = np.asarray(centre_xy) + rng.uniform(-height / 3, height / 3, (478, 2))
    lm[:, :468, :2] -= lm[0, :468, :2].mean(axis=0) - np.asarray(centre_xy)  # centroid exactly at the centre
    lm[:, FOREHEAD_TOP, :2] = (centre_xy[0], centre_xy[1] - height / 2)
    lm[:, CHIN, :2] = (centre_xy[0], centre_xy[1] + height / 2)
    return lm


def test_a_crop_that_fits_slides_inside_the_frame():
    # A face low in a 512x512 frame: the centred crop would run past the bottom edge.
    crop = head_crop(_face_at((300, 420), 200), (512, 512))
    assert crop.side == 340
    assert crop.y0 == 512 - 340 and crop.y0 <= 420 - 200 // 2  # inside, and the face still in it
    assert crop.x0 == round(300 - 170)  # horizontally it fitted already, so it stays centred
    # A face near the left edge slides right.
    assert head_crop(_face_at((60, 256), 200), (512, 512)).x0 == 0


def test_a_crop_larger_than_the_frame_is_centred_on_it():
    crop = head_crop(_face_at((320, 100), 160), (640, 200))
    assert crop.side == 272 and crop.y0 == (200 - 272) // 2  # padded evenly above and below
