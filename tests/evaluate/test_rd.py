"""The RD evaluation's pieces: our three streams and their rates, and the report (CSV, plots, grid)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from nerfconf.avatar.bundle import AvatarBundle
from nerfconf.codec.entropy import CoderId
from nerfconf.evaluate.baselines import BASELINES, encode
from nerfconf.evaluate.ffmpeg import decode_rgb, write_lossless
from nerfconf.evaluate.ours import our_streams, translation_config, transmit
from nerfconf.evaluate.rd import (
    RDInfo,
    RDOutput,
    RDPoint,
    RDResult,
    RDSettings,
    RDSummary,
    grid_rows,
    summarize,
    write_report,
)
from nerfconf.evaluate.reference import ReferenceClip
from nerfconf.evaluate.scoring import METRICS, score_clip
from nerfconf.report import to_json
from tests.evaluate.test_metrics import noisy, texture

SAMPLE = Path(__file__).resolve().parents[2] / "avatars" / "sample"
DOCS_RD = Path(__file__).resolve().parents[2] / "docs" / "rd"
FPS = 20.0


@pytest.fixture(scope="module")
def bundle() -> AvatarBundle:
    return AvatarBundle.load(SAMPLE)


def _walk(bundle: AvatarBundle, n: int, seed: int) -> np.ndarray:
    """A smooth random walk inside the face model's bounds: (n, K + 6) parameters."""
    lo, hi = bundle.face_model.bounds_lo, bundle.face_model.bounds_hi
    rng = np.random.default_rng(seed)
    steps = rng.normal(0, 0.02, (n, len(lo))).cumsum(axis=0)
    return lo + (hi - lo) * (0.5 + 0.4 * np.sin(steps * 3))


def test_our_three_streams_at_their_real_rates(bundle):
    k = bundle.codec.layout.n_expression
    train, test = _walk(bundle, 300, 0), _walk(bundle, 60, 1)
    streams = {s.name: s for s in our_streams(bundle, test, train, FPS)}
    assert list(streams) == ["float32", "exp-golomb", "arithmetic"]
    assert streams["float32"].kbps == pytest.approx((k + 6) * 32 * FPS / 1000)
    assert streams["float32"].rotation_only_kbps == pytest.approx((k + 3) * 32 * FPS / 1000)
    np.testing.assert_array_equal(streams["float32"].params, test)
    for name in ("exp-golomb", "arithmetic"):
        s = streams[name]
        assert 0 < s.rotation_only_kbps < s.kbps < streams["float32"].kbps
        assert s.render_key == "quantized"
    np.testing.assert_array_equal(streams["exp-golomb"].params, streams["arithmetic"].params)
    # the decoded values are the sent ones up to half a quantization step (inside the bounds)
    config = translation_config(bundle, train, CoderId.ARITHMETIC)
    step = config.make_quantizer().step
    inside = np.all((test >= config.bounds.lo) & (test <= config.bounds.hi), axis=1)
    err = np.abs(streams["arithmetic"].params - test)[inside]
    assert np.all(err <= step / 2 + 1e-9)


def test_transmit_counts_every_byte(bundle):
    train, test = _walk(bundle, 200, 2), _walk(bundle, 40, 3)
    config = translation_config(bundle, train, CoderId.EXP_GOLOMB)
    t = transmit(config, test, FPS)
    assert t.frames == 40 and t.decoded.shape == (40, config.layout.dims)
    assert t.payload_kbps == pytest.approx(t.payload_bytes * 8 / 2.0 / 1000)  # 40 frames = 2 s
    assert t.body_bytes < t.payload_bytes
    with pytest.raises(ValueError):
        translation_config(bundle, train[:, :10], CoderId.EXP_GOLOMB)


def test_bundle_test_frames(bundle):
    assert bundle.test_frames == 200  # the sample avatar held out its last 200 frames


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory, bundle) -> tuple[RDResult, Path]:
    """A 12-frame, 64 px result: real x265 encodes and real scores; 'ours' is the reference plus noise."""
    tmp = tmp_path_factory.mktemp("rd")
    big = texture(96, seed=5)
    frames = np.stack([big[4 : 4 + 64, i : i + 64] for i in range(12)])
    masks = np.zeros((12, 64, 64), np.float32)
    masks[:, 8:56, 12:52] = 1.0
    params = _walk(bundle, 12, 4)
    clip = ReferenceClip(frames, masks, params, params, np.arange(100, 112), FPS, "tiny")
    video = write_lossless(frames, tmp / "ref.mkv", FPS)
    points = []
    for rate in (2, 200):
        e = encode(BASELINES["x265"], video, rate, tmp / f"x265-{rate}.hevc", frames=12, fps=FPS)
        scores = score_clip(frames, masks, decode_rgb(e.stream, (64, 64)), video, FPS)
        points.append(RDPoint("x265", f"{rate}k requested", e.kbps, rate, None, scores, str(e.stream)))
    ours = np.stack([noisy(f, 6, seed=i) for i, f in enumerate(frames)])
    np.savez_compressed(tmp / "ours.npz", frames=ours)
    scores = score_clip(frames, masks, ours, video, FPS)
    for name, kbps in (("float32", 33.3), ("exp-golomb", 4.3), ("arithmetic", 3.8)):
        points.append(RDPoint("ours", name, kbps, None, kbps * 0.94, scores, str(tmp / "ours.npz")))
    settings = RDSettings(codecs=("x265",))
    info = RDInfo(avatar="tiny", video="tiny.mp4", resolution=64, frames=12, scored_frames=12, first_frame=100,
                  last_frame=111, fps=FPS, renderer="test frames", ffmpeg="ffmpeg", machine="here", seconds=0.0,
                  settings=settings, pose_refinement=None)
    result = RDResult(points, clip, np.arange(12), video, "test frames", settings, info)
    return result, tmp / "out"


def test_report_writes_csv_summary_plots_and_grid(tiny_result):
    result, out = tiny_result
    paths = write_report(result, out)
    with paths["csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5
    assert set(METRICS) <= set(rows[0])
    x265 = [r for r in rows if r["codec"] == "x265"]
    assert [float(r["kbps"]) for r in x265] == sorted(float(r["kbps"]) for r in x265)
    assert all(math.isfinite(float(r[m])) for r in rows for m in METRICS)
    for name in ("plot_psnr", "plot_ssim", "plot_lpips", "plot_vmaf", "grid"):
        data = paths[name].read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    md = paths["summary_md"].read_text()
    assert "| psnr |" in md and "x265" in md
    written = json.loads(paths["summary_json"].read_text())
    assert written["video"] == "tiny.mp4" and written["settings"]["codecs"] == ["x265"]
    assert json.loads(paths["frames_json"].read_text())["info"]["first_frame"] == 100


def test_summary_names_the_matching_rates(tiny_result):
    result, _ = tiny_result
    s = summarize(result)
    assert isinstance(s, RDSummary) and s.info is result.info
    assert set(s.metrics) == set(METRICS)
    psnr = s.metrics["psnr"]
    assert psnr.ours == pytest.approx(result.ours().mean("psnr"))
    m = psnr.match_kbps["x265"]
    x265 = result.codec_points("x265")
    assert x265[0].kbps <= m.kbps <= x265[-1].kbps
    assert m.text in (f"{m.kbps:.1f}", f"<= {m.kbps:.1f}", f"> {m.kbps:.1f}")
    assert s.floors_kbps["x265"] == x265[0].kbps
    assert s.ours["arithmetic"].kbps == 3.8 and psnr.bd_rate_vs_x265_percent == {}  # x265 alone: none to compare


def test_summary_json_has_the_shape_of_the_committed_ones(tiny_result):
    """One flat object, as docs/rd/*_rd_summary.json are: the run's info next to what it found."""
    result, _ = tiny_result
    out = json.loads(to_json(RDOutput(summarize(result), {"csv": Path("rd/rd_points.csv")})))
    committed = json.loads((DOCS_RD / "cnn2_rd_summary.json").read_text())
    assert list(out) == [*committed, "outputs"]
    assert out["outputs"] == {"csv": "rd/rd_points.csv"}
    assert set(out["metrics"]["psnr"]) == set(committed["metrics"]["psnr"])
    assert set(out["metrics"]["psnr"]["match_kbps"]["x265"]) == set(committed["metrics"]["psnr"]["match_kbps"]["x265"])
    assert set(out["ours"]["arithmetic"]) == set(committed["ours"]["arithmetic"])
    assert set(out["settings"]) == set(committed["settings"])
    assert out["pose_refinement"] is None and out["frames"] == 12


def test_grid_rows_find_the_fast_motion(tiny_result, bundle):
    result, _ = tiny_result
    clip = result.clip
    k = bundle.codec.layout.n_expression
    params = np.repeat(clip.params[:1], len(clip.frames), axis=0)
    params[7:, k] += 0.2  # a sudden 11 degree turn between frames 6 and 7
    moving = ReferenceClip(clip.frames, clip.masks, params, params, clip.indices, FPS, "t")
    speed = moving.rotation_speed()
    assert speed[7] == pytest.approx(np.degrees(0.2) * FPS) and speed[:7].max() == 0 and speed[8:].max() == 0
    rows = grid_rows(moving, np.arange(12))
    assert rows[-1][0] == 7 and "fast motion" in rows[-1][1] and "frame 107" in rows[-1][1]
    picked = moving.scored_frames(3)
    assert picked.tolist() == [0, 6, 7, 11]  # evenly spread, plus the fast motion
    assert np.array_equal(moving.scored_frames(None), np.arange(12))
    assert grid_rows(moving, picked)[-1][0] == int(np.flatnonzero(picked == 7)[0])


def test_cli_rejects_bad_input_clearly(tmp_path, capsys):
    from nerfconf.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["eval", "rd", "--help"])
    assert exc.value.code == 0 and "--frames" in capsys.readouterr().out
    video = tmp_path / "v.mp4"
    video.write_bytes(b"not a video")
    for bad, why in ((["--codecs", "x265,mpeg2"], "mpeg2"), (["--x265-kbps", "10,-3"], "positive"),
                     (["--frames", "0"], "at least 1")):
        with pytest.raises(SystemExit) as exc:
            main(["eval", "rd", "--avatar", str(tmp_path), "--video", str(video), *bad])
        assert exc.value.code == 2
        assert why in capsys.readouterr().err
    # not an avatar bundle: one line, no traceback
    assert main(["eval", "rd", "--avatar", str(tmp_path), "--video", str(video), "--out", str(tmp_path / "o")]) == 2
    assert "not an avatar bundle" in capsys.readouterr().err
