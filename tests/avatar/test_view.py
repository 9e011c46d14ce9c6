"""View geometry: offsets about the head centre, absolute views, limits."""

import numpy as np
import pytest

from nerfconf.avatar.view import MAX_VIEW_DEG, View, ViewError, camera_in_head, head_pose, orbit
from nerfconf.face.pose import angles_to_rotation, rotation_to_angles

CENTRE = np.array([0.0, 0.0, 0.03])
ANGLES = np.radians([10.0, -5.0, 3.0])
T = np.array([0.01, -0.02, 0.9])


def test_no_view_is_the_senders_pose():
    r, t = head_pose(ANGLES, T, None, CENTRE)
    assert np.allclose(r, angles_to_rotation(ANGLES)) and np.allclose(t, T)


def test_a_zero_offset_changes_nothing():
    r, t = head_pose(ANGLES, T, View(), CENTRE)
    assert np.allclose(r, angles_to_rotation(ANGLES)) and np.allclose(t, T)


def test_offsets_turn_the_head_about_its_centre():
    r0, t0 = head_pose(ANGLES, T, None, CENTRE)
    r, t = head_pose(ANGLES, T, View(30.0, -20.0, 10.0), CENTRE)
    assert np.allclose(r @ CENTRE + t, r0 @ CENTRE + t0)  # the centre stays put in the camera
    assert np.allclose(r, r0 @ angles_to_rotation(np.radians([30.0, -20.0, 10.0])))


def test_absolute_views_ignore_the_senders_rotation():
    r, t = head_pose(ANGLES, T, View(-45.0, 0.0, 0.0, absolute=True), CENTRE)
    assert np.allclose(rotation_to_angles(r), np.radians([-45.0, 0.0, 0.0]))
    r0, t0 = head_pose(ANGLES, T, None, CENTRE)
    assert np.allclose(r @ CENTRE + t, r0 @ CENTRE + t0)


def test_camera_in_head_inverts_the_pose():
    r, t = head_pose(ANGLES, T, View(20.0), CENTRE)
    rot, centre = camera_in_head(r, t)
    assert np.allclose(r @ centre + t, 0.0) and np.allclose(rot @ r, np.eye(3))


@pytest.mark.parametrize("bad", [dict(yaw=45.5), dict(pitch=-90), dict(roll=float("nan")), dict(yaw="10")])
def test_out_of_range_views_are_refused_with_a_clear_error(bad):
    with pytest.raises(ViewError, match="view"):
        View(**bad)


def test_clamped_views_stay_within_limits():
    v = View.clamped(100.0, -100.0, float("nan"))
    assert (v.yaw, v.pitch, v.roll) == (MAX_VIEW_DEG, -MAX_VIEW_DEG, 0.0)


def test_orbit_is_closed_and_within_limits():
    views = orbit(40, 35.0, 15.0)
    assert len(views) == 40 and views[0] == View(0.0, 0.0)
    yaws = [v.yaw for v in views]
    assert max(yaws) == pytest.approx(35.0) and min(yaws) == pytest.approx(-35.0)
    with pytest.raises(ViewError):
        orbit(0)
