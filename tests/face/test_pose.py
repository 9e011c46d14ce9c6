import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from nerfconf.face.pose import (
    Similarity,
    angles_to_rotation,
    fit_similarity,
    fit_similarity_robust,
    rotation_to_angles,
)

angles = st.tuples(*(st.floats(-1.2, 1.2),) * 3)


@given(angles)
def test_angles_round_trip(a):
    r = angles_to_rotation(np.array(a))
    assert np.allclose(r @ r.T, np.eye(3), atol=1e-12) and np.isclose(np.linalg.det(r), 1.0)
    assert np.allclose(rotation_to_angles(r), a, atol=1e-9)


def test_angle_signs_follow_the_documented_convention():
    forward = np.array([0.0, 0.0, -1.0])  # the face looks at the camera
    assert (angles_to_rotation(np.array([0.3, 0, 0])) @ forward)[0] < 0  # yaw: toward image left
    assert (angles_to_rotation(np.array([0, 0.3, 0])) @ forward)[1] > 0  # pitch: down
    assert (angles_to_rotation(np.array([0, 0, 0.3])) @ np.array([1.0, 0, 0]))[1] > 0  # roll: clockwise


@given(angles, st.floats(0.1, 10), st.tuples(*(st.floats(-100, 100),) * 3))
def test_similarity_fit_recovers_a_known_transform(a, scale, t):
    rng = np.random.default_rng(0)
    src = rng.normal(size=(40, 3))
    truth = Similarity(scale, angles_to_rotation(np.array(a)), np.array(t))
    fit = fit_similarity(src, truth.apply(src))
    assert np.isclose(fit.scale, scale) and np.allclose(fit.rotation, truth.rotation, atol=1e-8)
    assert np.allclose(fit.invert(truth.apply(src)), src, atol=1e-8)


def test_robust_fit_ignores_a_few_gross_outliers():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(60, 3))
    truth = Similarity(2.0, angles_to_rotation(np.array([0.2, -0.1, 0.05])), np.array([5.0, 1.0, 0.0]))
    dst = truth.apply(src) + rng.normal(0, 0.01, src.shape)
    dst[:4] += 5.0  # a hand over the cheek
    plain, robust = fit_similarity(src, dst), fit_similarity_robust(src, dst)
    err = lambda f: np.degrees(np.arccos((np.trace(f.rotation @ truth.rotation.T) - 1) / 2))  # noqa: E731
    assert err(robust) < 0.2 < err(plain)
