"""``nerfconf bench render`` and ``nerfconf view`` on a tiny avatar bundle."""

import json

import av
import pytest

from nerfconf.bench.render import bench_render
from nerfconf.cli import main

from ..avatar.tiny_avatar import RESOLUTION, tiny_bundle, tiny_track


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("avatar")
    tiny_bundle().save(d / "tiny")
    tiny_track(8).save(d / "track.npz")
    return d / "tiny", d / "track.npz"


def test_bench_render_reports_speed_and_fidelity():
    result = bench_render(tiny_bundle(), tiny_track(6), frames=7, quality_frames=2)
    ms = result.ms_per_frame
    assert result.frames == 7 and 0 < ms.min <= ms.median <= ms.p95
    assert result.resolution == RESOLUTION and result.device.startswith("cpu")
    assert result.threads["numba"] >= 1 and result.threads["torch"] >= 1
    assert result.quality.frames == 2 and result.quality.psnr_min >= 40
    # the cost in GMAC-equivalents is the median ms times the host's measured rate times the render threads
    assert result.sgemm_gmacs_per_core > 0.1
    expected = ms.median * 1e-3 * result.sgemm_gmacs_per_core * result.threads["numba"]
    assert result.gmac_equivalents_median == pytest.approx(expected)


def test_sgemm_rate_is_a_plausible_measurement():
    from nerfconf.bench.host import sgemm_gmacs  # noqa: PLC0415

    small, full = sgemm_gmacs((256, 64, 64), seconds=0.05), sgemm_gmacs(seconds=0.05)
    # any real core multiplies at 0.1 to 1000 GMAC/s; a clock or shape mistake lands far outside
    assert 0.1 < small < 1000 and 0.1 < full < 1000


def test_cli_bench_render_json(saved, capsys):
    bundle, track = saved
    assert main(["bench", "render", "--avatar", str(bundle), "--track", str(track), "--frames", "3",
                 "--resolution", "48", "--quality-frames", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["resolution"] == 48 and out["frames"] == 3 and out["quality"]["psnr_min"] >= 40


def test_cli_bench_render_needs_a_real_track(saved, capsys):
    bundle, _ = saved
    assert main(["bench", "render", "--avatar", str(bundle), "--frames", "3"]) == 2
    assert "give --track or --video" in capsys.readouterr().err


def test_cli_view_headless_writes_an_orbit_video_and_a_strip(saved, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    bundle, track = saved
    out = tmp_path / "orbit.mp4"
    assert main(["view", "--avatar", str(bundle), "--track", str(track), "-o", str(out), "--frames", "5"]) == 0
    assert str(out) in capsys.readouterr().out
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 5
    strip = tmp_path / "strip.png"
    assert main(["view", "--avatar", str(bundle), "--strip", str(strip)]) == 0  # neutral face, no track
    assert strip.stat().st_size > 0


def test_cli_bench_render_settings(saved, capsys):
    bundle, track = saved
    assert main(["bench", "render", "--avatar", str(bundle), "--track", str(track), "--frames", "2",
                 "--quality-frames", "0", "--set", "upsample_tolerance=0", "--set", "t_min=0.01", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["settings"]["upsample_tolerance"] == 0.0 and out["settings"]["t_min"] == 0.01
    assert main(["bench", "render", "--avatar", str(bundle), "--track", str(track), "--set", "speed=11"]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err
