import json
from dataclasses import replace

import numpy as np
import pytest

from nerfconf.bench.extract import rebuild_error_px, synthetic_pose_errors
from nerfconf.capture.video import CropBox
from nerfconf.face.landmarks import LEFT_IRIS_CENTRE, RIGHT_IRIS_CENTRE
from nerfconf.face.model import ASSUMED_IPD_MM, FaceModel, FaceModelError, fit_face_model

from .conftest import CNN2_TRAIN, finite_rows


def test_model_shape_and_canonical_frame(cnn2_model):
    m = cnn2_model
    assert m.template.shape == (478, 3) and m.basis.shape == (46, 478 * 3)
    assert np.allclose(m.basis @ m.basis.T, np.eye(46), atol=1e-6)  # orthonormal components
    ipd = np.linalg.norm(m.template[LEFT_IRIS_CENTRE] - m.template[RIGHT_IRIS_CENTRE])
    assert ipd == pytest.approx(ASSUMED_IPD_MM, rel=0.02)  # metric scale
    assert m.template[1, 2] < m.template[:468, 2].mean()  # the nose tip points at the camera (-z)
    assert m.template[152, 1] > m.template[10, 1]  # chin below forehead (+y down)
    lips = {0, 13, 14, 17, 61, 291}
    assert not lips & set(m.stable.tolist())  # pose ignores the mouth
    assert np.all(m.bounds_lo < m.bounds_hi)
    # the mean orientation over enrollment is the zero pose
    k = m.n_expression
    assert np.all(np.abs((m.bounds_lo[k:k + 3] + m.bounds_hi[k:k + 3]) / 2) < np.radians(10))


def test_rebuilt_landmarks_match_held_out_frames(cnn2_landmarks, cnn2_model):
    _, landmarks, _ = cnn2_landmarks
    test = landmarks[CNN2_TRAIN:][finite_rows(landmarks[CNN2_TRAIN:])]
    errors = {k: rebuild_error_px(cnn2_model.truncated(k), test) for k in (8, 46)}
    assert errors[46] <= 1.5  # the target at 512 px
    assert errors[46] < errors[8]  # more components, closer fit


def test_pose_solver_recovers_synthetic_rotations(cnn2_model):
    result = synthetic_pose_errors(cnn2_model, trials=100, seed=3)
    assert result.mean_angle_error_deg <= 1.0


def test_params_round_trip_through_reconstruction(cnn2_landmarks, cnn2_model):
    _, landmarks, _ = cnn2_landmarks
    lm = landmarks[CNN2_TRAIN + 5]
    pose = cnn2_model.solve_pose(lm)
    coeffs = cnn2_model.coefficients(lm, pose)
    rebuilt = cnn2_model.reconstruct(coeffs, pose)
    again = cnn2_model.coefficients(rebuilt, cnn2_model.solve_pose(rebuilt))
    # expressions move a few stable landmarks too, so the re-solved pose absorbs a little
    assert np.linalg.norm(again - coeffs) < 0.05 * np.linalg.norm(coeffs)


def test_save_load_round_trip(cnn2_model, tmp_path):
    cnn2_model.save(tmp_path)
    loaded = FaceModel.load(tmp_path)
    assert loaded.n_expression == 46 and loaded.camera == cnn2_model.camera
    assert np.allclose(loaded.template, cnn2_model.template, atol=1e-4)
    assert np.array_equal(loaded.bounds_lo, cnn2_model.bounds_lo)
    assert np.array_equal(loaded.stable, cnn2_model.stable)


def test_wrong_version_and_damage_are_named(cnn2_model, tmp_path):
    cnn2_model.save(tmp_path)
    meta = json.loads((tmp_path / "face_model.json").read_text())
    (tmp_path / "face_model.json").write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(FaceModelError, match="format 99"):
        FaceModel.load(tmp_path)
    (tmp_path / "face_model.json").write_text(json.dumps(meta))
    (tmp_path / "face_model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(FaceModelError, match="damaged"):
        FaceModel.load(tmp_path)
    with pytest.raises(FaceModelError, match="no face model"):
        FaceModel.load(tmp_path / "nowhere")


def test_the_framing_round_trips_as_typed_fields(cnn2_model, tmp_path):
    framed = replace(cnn2_model, crop=CropBox(12, -4, 300), neck_margin=0.1)
    framed.save(tmp_path)
    meta = json.loads((tmp_path / "face_model.json").read_text())
    assert meta["format"] == 2 and meta["crop"] == {"x0": 12, "y0": -4, "side": 300}
    loaded = FaceModel.load(tmp_path)
    assert loaded.crop == CropBox(12, -4, 300) and loaded.neck_margin == 0.1
    assert "crop" not in loaded.metadata and "neck_margin" not in loaded.metadata


def test_a_format_1_model_is_migrated_on_load(cnn2_model, tmp_path):
    cnn2_model.save(tmp_path)
    meta = json.loads((tmp_path / "face_model.json").read_text())
    # format 1 kept the crop as a JSON string in free metadata, and early models had no neck margin
    old = {**{k: v for k, v in meta.items() if k != "neck_margin"}, "format": 1,
           "crop": json.dumps({"x0": 3, "y0": 5, "side": 200})}
    (tmp_path / "face_model.json").write_text(json.dumps(old))
    loaded = FaceModel.load(tmp_path)
    assert loaded.crop == CropBox(3, 5, 200) and loaded.neck_margin == 0.25


@pytest.mark.parametrize(("crop", "neck", "message"), [
    ({"x0": 1, "y0": 2}, 0.1, "crop must be"),
    ({"x0": 1.5, "y0": 2, "side": 100}, 0.1, "crop must be"),
    ({"x0": 1, "y0": 2, "side": 4}, 0.1, "crop side must be at least 8"),
    ("[1, 2, 3]", 0.1, "crop must be"),
    (None, -1.0, "neck_margin must be"),
    (None, True, "neck_margin must be"),
])
def test_a_bad_framing_is_refused_by_name(cnn2_model, tmp_path, crop, neck, message):
    cnn2_model.save(tmp_path)
    meta = json.loads((tmp_path / "face_model.json").read_text())
    (tmp_path / "face_model.json").write_text(json.dumps({**meta, "crop": crop, "neck_margin": neck}))
    with pytest.raises(FaceModelError, match=message):
        FaceModel.load(tmp_path)


def test_too_few_faces_is_refused():
    with pytest.raises(ValueError, match="frames with a face"):
        fit_face_model(np.full((20, 478, 3), np.nan), (512, 512))
