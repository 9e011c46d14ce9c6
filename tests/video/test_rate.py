import pytest

from nerfconf.net.messages import LossReport, VideoCodec
from nerfconf.video.ladder import LADDERS, LadderPolicy
from nerfconf.video.rate import RateController


def test_heavy_loss_cuts_the_target_once_per_cooldown():
    rc = RateController(32, min_kbps=8)
    assert rc.on_report(LossReport(51, 30), 0.0) == pytest.approx(32 * (1 - 0.5 * 51 / 256))
    assert rc.on_report(LossReport(51, 30), 0.25) == pytest.approx(32 * (1 - 0.5 * 51 / 256))  # in cooldown
    assert rc.on_report(LossReport(51, 30), 0.6) < 26


def test_a_clean_link_grows_the_target_to_the_ceiling_and_no_further():
    rc = RateController(64, min_kbps=8)
    rc.target = 16
    t = 0.0
    for _ in range(10):
        t += 0.25
        rc.on_report(LossReport(0, 100), t)
    assert rc.target == pytest.approx(16 * 1.08 ** 2.25, rel=1e-6)
    for _ in range(200):
        t += 0.25
        rc.on_report(LossReport(0, 100), t)
    assert rc.target == 64


def test_growth_is_bounded_by_what_arrives_but_a_quiet_encoder_does_not_pull_it_down():
    rc = RateController(200, min_kbps=8)
    rc.target = 40
    rc.on_report(LossReport(0, 5), 0.0)
    rc.on_report(LossReport(0, 5), 1.0)
    assert rc.target == 40  # 1.5 x 5 + 10 is below 40: no growth, and no cut either
    rc.on_report(LossReport(0, 40), 2.0)
    assert rc.target == pytest.approx(40 * 1.08)


def test_moderate_loss_holds_and_the_floor_holds():
    rc = RateController(32, min_kbps=8)
    rc.on_report(LossReport(13, 30), 0.0)  # 5 %
    assert rc.target == 32
    for i in range(50):
        rc.on_report(LossReport(200, 5), i * 1.0)
    assert rc.target == 8


def test_the_ladder_steps_down_at_once_and_up_only_after_a_hold_with_margin():
    policy = LadderPolicy(VideoCodec.H264, max_fps=20, hold=2.0, margin=1.15)
    assert policy.choose(32, 0.0).size == 192
    assert policy.choose(15, 0.1).size == 128  # down at once
    assert policy.choose(45, 1.0).size == 128  # not within the hold
    assert policy.choose(21, 3.0).size == 128  # 21 < 20 x 1.15
    assert policy.choose(45, 3.1).size == 160  # one rung at a time
    assert policy.choose(45, 5.2).size == 192


def test_every_ladder_starts_at_zero_and_rises():
    for codec, rungs in LADDERS.items():
        assert rungs[0].min_kbps == 0
        assert all(a.min_kbps < b.min_kbps and a.size <= b.size for a, b in zip(rungs, rungs[1:])), codec
    assert LadderPolicy(VideoCodec.H264, max_fps=12).choose(100, 0).fps == 12
