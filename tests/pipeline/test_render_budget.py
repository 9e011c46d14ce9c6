"""The render-size governor: down at once when frames run late, back up slowly, never below its floor."""

import pytest

from nerfconf.pipeline.render_budget import BudgetConfig, ResolutionGovernor, ladder

CONFIG = BudgetConfig(fps=20.0, share=0.7, window=8, settle=40, headroom=0.8)
BUDGET = CONFIG.budget_s  # 35 ms


def _feed(governor, seconds, n):
    return [size for _ in range(n) if (size := governor.observe(seconds)) is not None]


def test_the_ladder_steps_an_eighth_of_the_side_down_to_half():
    assert ladder(256) == (256, 224, 192, 160, 128)
    assert ladder(512) == (512, 448, 384, 320, 256)
    assert ladder(32) == (32, 16)
    assert ladder(200) == (200, 176, 160, 144, 128, 112)


def test_a_host_fast_enough_never_changes_size():
    g = ResolutionGovernor(256, CONFIG)
    assert _feed(g, 0.9 * BUDGET, 500) == [] and g.resolution == 256 and g.changes == 0


def test_a_slow_host_steps_down_at_once_to_the_largest_size_predicted_to_fit():
    g = ResolutionGovernor(256, CONFIG)
    # twice the budget at 256 px: cost scales with pixels, so sides up to 256 / sqrt(2) = 181 fit
    assert _feed(g, 2 * BUDGET, CONFIG.window - 1) == []
    assert g.observe(2 * BUDGET) == 160 and g.resolution == 160 and g.changes == 1


def test_a_host_far_too_slow_stops_at_the_smallest_size():
    g = ResolutionGovernor(256, CONFIG)
    assert _feed(g, 10 * BUDGET, 100) == [128] and g.resolution == 128


def test_it_goes_back_up_one_size_at_a_time_once_frames_have_room():
    g = ResolutionGovernor(256, CONFIG)
    _feed(g, 2 * BUDGET, CONFIG.window)
    assert g.resolution == 160
    # a quiet host again: 5 ms at 160 px predicts well inside the headroom at every larger size
    ups = _feed(g, 0.005, CONFIG.settle - 1)
    assert ups == [] and g.resolution == 160, "went up before the size had settled"
    assert _feed(g, 0.005, 1) == [192]
    assert _feed(g, 0.005, CONFIG.settle) == [224]
    assert _feed(g, 0.005, CONFIG.settle) == [256]
    assert _feed(g, 0.005, 10 * CONFIG.settle) == [] and g.changes == 4


def test_it_does_not_go_up_when_the_next_size_would_be_near_the_budget():
    g = ResolutionGovernor(256, CONFIG)
    _feed(g, 2 * BUDGET, CONFIG.window)
    # at 160 px this fits, but 192 px is predicted at (192/160)^2 = 1.44x: over 80 % of the budget
    assert _feed(g, 0.6 * BUDGET, 10 * CONFIG.settle) == [] and g.resolution == 160


@pytest.mark.parametrize("kwargs", [dict(fps=0), dict(share=0), dict(share=1.5), dict(window=0),
                                    dict(window=10, settle=5), dict(min_fraction=0), dict(headroom=2)])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        BudgetConfig(**kwargs)
