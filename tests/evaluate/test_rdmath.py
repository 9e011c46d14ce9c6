"""Match rates and BD-rate on curves with known answers."""

from __future__ import annotations

import math

import pytest

from nerfconf.evaluate.rdmath import bd_rate, match_rate

CURVE = [(10.0, 30.0), (20.0, 33.0), (40.0, 36.0), (80.0, 39.0)]  # +3 dB per doubling


def test_match_rate_interpolates_in_log_rate():
    m = match_rate(CURVE, 34.5)
    assert m.how == "interpolated"
    assert m.kbps == pytest.approx(20 * math.sqrt(2))  # halfway between 20 and 40 in log rate
    assert str(m) == f"{20 * math.sqrt(2):.1f}"


def test_match_rate_bounds():
    assert match_rate(CURVE, 25.0).how == "at-or-below"
    assert match_rate(CURVE, 25.0).kbps == 10.0
    above = match_rate(CURVE, 45.0)
    assert (above.how, above.kbps, str(above)) == ("above", 80.0, "> 80.0")


def test_match_rate_lower_is_better():
    lpips = [(10.0, 0.20), (20.0, 0.10), (40.0, 0.05)]
    m = match_rate(lpips, 0.10, higher_is_better=False)
    assert m.kbps == pytest.approx(20.0)
    assert match_rate(lpips, 0.3, higher_is_better=False).how == "at-or-below"


def test_match_rate_needs_points():
    with pytest.raises(ValueError):
        match_rate([(0.0, 1.0), (5.0, math.nan)], 1.0)


def test_bd_rate_of_identical_curves_is_zero():
    assert bd_rate(CURVE, CURVE) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_bd_rate_of_a_scaled_curve(factor):
    test = [(r * factor, q) for r, q in CURVE]
    assert bd_rate(CURVE, test) == pytest.approx((factor - 1) * 100, rel=1e-9)


def test_bd_rate_lower_is_better_and_no_overlap():
    anchor = [(10.0, 0.3), (20.0, 0.2), (40.0, 0.1)]
    assert bd_rate(anchor, [(r / 2, q) for r, q in anchor], higher_is_better=False) == pytest.approx(-50.0)
    assert bd_rate(CURVE, [(5.0, 50.0), (10.0, 60.0)]) is None
    assert bd_rate(CURVE, [(5.0, 31.0)]) is None
