import numpy as np
import pytest

from nerfconf.face.smoothing import OneEuroFilter


def test_removes_jitter_and_follows_a_step():
    rng = np.random.default_rng(0)
    f = OneEuroFilter(np.ones(1))
    t = np.arange(200) / 20
    x = np.where(t < 5, 0.0, 3.0) + rng.normal(0, 0.1, 200)
    y = np.array([f(np.array([v]), ti)[0] for v, ti in zip(x, t)])
    assert np.std(y[40:100]) < 0.6 * np.std(x[40:100])  # still segment: jitter reduced
    assert abs(y[110] - 3.0) < 0.3  # half a second after the step it has arrived


def test_reset_passes_the_next_value_through():
    f = OneEuroFilter(np.ones(2))
    f(np.zeros(2), 0.0)
    f.reset()
    assert np.array_equal(f(np.array([5.0, -5.0]), 0.05), [5.0, -5.0])


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="min_cutoff"):
        OneEuroFilter(np.ones(1), min_cutoff=0)
