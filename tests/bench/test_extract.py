"""``bench extract``'s parts: pose jitter and robustness, as typed results and as JSON."""

import json

import numpy as np
import pytest

from nerfconf.bench.extract import Robustness, Spread, jitter_deg, robustness
from nerfconf.report import to_json

from ..conftest import shared_data


def test_jitter_is_the_frame_to_frame_change_of_each_angle():
    k = 4
    n = 41
    params = np.zeros((n, k + 6))
    params[:, k] = np.radians(0.5) * np.arange(n)  # yaw turns half a degree a frame
    params[:, k + 2] = np.radians(2.0) * (np.arange(n) % 2)  # roll flips by two degrees every frame
    params[10] = np.nan  # a frame without a face is left out, not bridged by a zero
    jitter = jitter_deg(params, k)
    assert list(jitter) == ["yaw", "pitch", "roll"] and all(isinstance(s, Spread) for s in jitter.values())
    # the gap over the missing frame is one step of yaw more, and a roll step of zero
    assert jitter["yaw"].median == pytest.approx(0.5) and jitter["yaw"].p95 == pytest.approx(0.5)
    assert jitter["pitch"] == Spread(0.0, 0.0)
    assert jitter["roll"].median == pytest.approx(2.0)
    assert json.loads(to_json(jitter))["roll"] == {"median": jitter["roll"].median, "p95": jitter["roll"].p95}


def test_robustness_of_a_short_clip():
    result = robustness(shared_data("short_5.mp4"), n_expression=16)
    assert isinstance(result, Robustness) and result.video == "short_5.mp4" and result.frames > 20
    assert 0.9 < result.face_found_rate <= 1 and result.n_expression == 16
    # bounds fitted on the first 61 frames: a share of the second half leaves them, far from all of it
    assert 0 < result.outside_bounds_fraction_pose < 0.5 and 0 < result.outside_bounds_fraction < 0.5
    assert list(json.loads(to_json(result))) == ["video", "frames", "face_found_rate", "n_expression",
                                                 "outside_bounds_fraction", "outside_bounds_fraction_pose"]
