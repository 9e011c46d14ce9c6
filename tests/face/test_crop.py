from nerfconf.capture.video import CropBox
from nerfconf.face.crop import model_framing


def test_live_frames_are_framed_like_the_face_model_saw_them():
    import json

    crop = json.dumps({"x0": 100, "y0": 20, "side": 300})
    assert model_framing(crop, (256, 256), (256, 256)) is None  # already the model's geometry
    assert model_framing(crop, (640, 480), (256, 256)) == CropBox(100, 20, 300)  # enrollment crop fits
    assert model_framing(crop, (320, 240), (256, 256)) == CropBox(40, 0, 240)  # it does not: centre square
    assert model_framing(None, (844, 844), (128, 128)) == CropBox(0, 0, 844)
