import json
import math

import pytest

from nerfconf.bench.process_usage import ProcessUsage
from nerfconf.bench.soak import (
    DirectionSample,
    SoakSample,
    allowed_loss,
    judge_delay,
    judge_memory,
    reference_index,
)
from nerfconf.cli import main


def test_a_short_soak_samples_real_processes_and_a_real_call(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NERFCONF_CONFIG_DIR", str(tmp_path))
    code = main(["bench", "soak", "--json", "--minutes", "0.05", "--every", "1"])
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert code == (0 if result["passed"] else 1)
    assert result["rendering"].startswith("none") and result["alive"]
    assert [s["minute"] for s in result["samples"]] == pytest.approx([1 / 60, 2 / 60, 3 / 60])
    assert err.count("minute") == 3  # each sample was reported as it was taken
    for sample in result["samples"]:
        assert set(sample["processes"]) == {"relay", "a", "b"}
        for usage in sample["processes"].values():
            assert usage["rss_mb"] > 20 and usage["open_fds"] > 3
    last = result["samples"][-1]["directions"]
    for name in ("a_to_b", "b_to_a"):
        assert last[name]["frames_received"] > 0 and last[name]["frames_decoded"] > 0
        # captured at the sender, played at the receiver: at least the emulated 10 ms one-way delay
        assert 10 < last[name]["playout_delay_ms"] < 1000
        lost = result["frames_lost"][name]
        assert lost["frames_sent"] == 60 and 0 <= lost["frames_lost"] < 60
        assert result["links"][name]["delivered"] > 0
    assert set(result["memory"]) == {"relay", "a", "b"}


def test_a_soak_too_short_for_two_samples_is_refused_in_one_line(capsys):
    assert main(["bench", "soak", "--minutes", "0.01", "--every", "60"]) == 2
    err = capsys.readouterr().err
    assert "cannot take two samples" in err and "Traceback" not in err


def _sample(minute: float, rss: float, delay_ms: float) -> SoakSample:
    d = DirectionSample(1, 1, 0, 1, 0, 0, 0, 0, delay_ms, 0.0)
    return SoakSample(minute, {"a": ProcessUsage(rss, 10)}, {"a_to_b": d})


def test_the_judgement_catches_growing_memory_and_drifting_delay_but_not_noise():
    steady = [_sample(m, 100.0 + (m % 2), 70.0 + 20 * (m % 2)) for m in range(1, 31)]
    ref = reference_index(steady, 1800)
    assert steady[ref].minute == 2
    assert judge_memory(steady, ref)["a"].ok and judge_delay(steady, ref, 20.0)["a_to_b"].ok
    growing = [_sample(m, 100.0 + 0.5 * m, 70.0 + 2.0 * m) for m in range(1, 31)]
    memory = judge_memory(growing, ref)["a"]
    assert not memory.ok and memory.change == pytest.approx(14 / 101)
    delay = judge_delay(growing, ref, 20.0)["a_to_b"]
    assert not delay.ok and delay.trend_ms_per_minute == pytest.approx(2.0)
    # a run too short to have a minute 2 compares with its middle
    quarter_minutes = [_sample(m / 4, 100.0, 70.0) for m in range(1, 5)]
    assert reference_index(quarter_minutes, 60) == 1


def test_the_loss_allowance_is_what_redundancy_leaves():
    expected, allowed = allowed_loss(36_000, 0.05, 3, "datagram")
    assert expected == pytest.approx(4.5) and allowed == math.floor(4.5 + 3 * math.sqrt(4.5) + 1)
    assert allowed_loss(36_000, 0.05, 3, "stream") == (0.0, 0)
