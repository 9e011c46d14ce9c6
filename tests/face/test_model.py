import json

import numpy as np
import pytest

from nerfconf.bench.extract import rebuild_error_px, synthetic_pose_errors
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
    assert result["mean_angle_error_deg"] <= 1.0


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


def test_too_few_faces_is_refused():
    with pytest.raises(ValueError, match="frames with a face"):
        fit_face_model(np.full((20, 478, 3), np.nan), (512, 512))
