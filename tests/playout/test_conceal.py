import itertools

import numpy as np
import pytest

from nerfconf.face.pose import angles_to_rotation
from nerfconf.playout.conceal import extrapolate, extrapolation_weight, geodesic, interpolate
from nerfconf.types import FaceParams


def _p(index, expr, rot, trans=None):
    return FaceParams(np.asarray(expr, float), np.radians(rot), None if trans is None else np.asarray(trans, float),
                      True, index / 20, index)


def test_euler_convention_matches_the_face_module():
    angles = np.radians([12.0, -7.0, 4.0])
    from scipy.spatial.transform import Rotation
    np.testing.assert_allclose(Rotation.from_euler("YXZ", angles).as_matrix(), angles_to_rotation(angles), atol=1e-12)


def test_geodesic_hits_the_ends_and_halves_a_single_axis_turn():
    a, b = np.radians([0, 0, 0]), np.radians([20, 0, 0])
    np.testing.assert_allclose(geodesic(a, b, 0), a, atol=1e-12)
    np.testing.assert_allclose(geodesic(a, b, 1), b, atol=1e-12)
    np.testing.assert_allclose(geodesic(a, b, 0.5), np.radians([10, 0, 0]), atol=1e-12)


def test_slerp_is_constant_speed_for_a_compound_rotation():
    a, b = np.radians([10, -5, 3]), np.radians([-15, 12, -6])
    mats = [angles_to_rotation(geodesic(a, b, t)) for t in np.linspace(0, 1, 5)]
    steps = [np.degrees(np.arccos(np.clip((np.trace(m1.T @ m2) - 1) / 2, -1, 1))) for m1, m2 in itertools.pairwise(mats)]
    assert max(steps) - min(steps) < 1e-6


def test_interpolate_lerps_expression_and_slerps_rotation():
    a, b = _p(10, [0, 2], [0, 0, 0], [0, 0, 0.5]), _p(14, [4, -2], [8, 0, 0], [0, 0, 0.9])
    mid = interpolate(a, b, 11)
    np.testing.assert_allclose(mid.expression, [1, 1])
    np.testing.assert_allclose(mid.rotation, np.radians([2, 0, 0]), atol=1e-12)
    np.testing.assert_allclose(mid.translation, [0, 0, 0.6])
    assert mid.index == 11 and mid.face_found


def test_extrapolation_follows_motion_then_decays_to_the_last_good_pose():
    prev, last = _p(9, [0.0], [0, 0, 0]), _p(10, [1.0], [1, 0, 0])
    first = extrapolate(prev, last, 11, decay_frames=3, fps=20)
    w1 = extrapolation_weight(1, 3)
    np.testing.assert_allclose(first.expression, [1 + w1])
    np.testing.assert_allclose(first.rotation, np.radians([1 + w1, 0, 0]), atol=1e-12)
    far = extrapolate(prev, last, 60, decay_frames=3, fps=20)
    np.testing.assert_allclose(far.expression, [1.0], atol=1e-5)
    np.testing.assert_allclose(far.rotation, np.radians([1, 0, 0]), atol=1e-6)
    peak = max(range(1, 30), key=lambda n: extrapolation_weight(n, 3))
    assert peak == 3


def test_extrapolation_without_motion_holds_the_pose():
    last = _p(10, [0.5, 0.2], [3, 1, 0])
    held = extrapolate(None, last, 13, decay_frames=3, fps=20)
    np.testing.assert_allclose(held.expression, last.expression)
    np.testing.assert_allclose(held.rotation, last.rotation)
    assert held.index == 13 and held.t_capture == pytest.approx(last.t_capture + 3 / 20)
