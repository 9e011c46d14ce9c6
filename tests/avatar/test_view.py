"""Views: limits, clamping, orbits (the geometry they make is in test_camera.py)."""

import pytest

from nerfconf.avatar.view import MAX_VIEW_DEG, View, ViewError, orbit


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
