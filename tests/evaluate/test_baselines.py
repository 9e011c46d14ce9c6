"""The ffmpeg baselines and VMAF, on a few tiny real frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from nerfconf.evaluate import baselines, ffmpeg
from nerfconf.evaluate.baselines import BASELINES, encode
from nerfconf.evaluate.scoring import head_on_white
from tests.evaluate.test_metrics import texture

FPS = 20.0


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """12 frames, 64 px: a texture panning one pixel a frame, as a tiny moving video."""
    big = texture(96, seed=3)
    return np.stack([big[8 : 8 + 64, i : i + 64] for i in range(12)])


@pytest.fixture(scope="module")
def source(clip, tmp_path_factory):
    return ffmpeg.write_lossless(clip, tmp_path_factory.mktemp("ref") / "ref.mkv", FPS)


def test_ffmpeg_has_every_encoder_and_vmaf():
    have = ffmpeg.encoders()
    for b in BASELINES.values():
        assert b.encoder in have
    assert "libvmaf" in ffmpeg.run_ffmpeg(["-filters"]).decode()


def test_lossless_reference_round_trips(clip, source):
    assert np.array_equal(ffmpeg.decode_rgb(source, (64, 64)), clip)


def test_x265_baseline_reports_the_measured_rate(clip, source, tmp_path):
    out = tmp_path / "x.hevc"
    result = encode(BASELINES["x265"], source, 5, out, frames=len(clip), fps=FPS)
    size = out.stat().st_size
    # the packets of a raw Annex B stream are the whole file, parameter sets included
    assert result.bytes == size
    assert result.kbps == pytest.approx(size * 8 / (len(clip) / FPS) / 1000)
    assert result.kbps != result.requested_kbps
    decoded = ffmpeg.decode_rgb(out, (64, 64))
    assert decoded.shape == clip.shape
    assert np.abs(decoded.astype(int) - clip).mean() < 40  # it is the same picture, lossy


def test_the_papers_x265_command():
    cmd = BASELINES["x265"].command(Path("in.mkv"), 18, Path("o"), 20)
    joined = " ".join(cmd)
    assert "-c:v libx265 -x265-params bframes=0" in joined
    assert "-b:v 18k -r 20" in joined


def test_missing_encoder_is_a_clear_error(source, tmp_path, monkeypatch):
    monkeypatch.setattr(baselines, "encoders", lambda: frozenset())
    with pytest.raises(ffmpeg.FFmpegError, match="no libvvenc"):
        encode(BASELINES["vvc"], source, 5, tmp_path / "v.266", frames=12, fps=FPS)


def test_vmaf_identical_high_and_damage_lower(clip, source):
    same = ffmpeg.vmaf_scores(source, clip, FPS)
    assert same.shape == (len(clip),)
    assert same.min() > 90
    blurred = np.stack([cv2.GaussianBlur(f, (9, 9), 3) for f in clip])
    worse = ffmpeg.vmaf_scores(source, blurred, FPS)
    assert worse.mean() < same.mean() - 20


def test_head_on_white():
    frames = np.full((1, 4, 4, 3), 10, np.uint8)
    masks = np.zeros((1, 4, 4), np.float32)
    masks[0, :2] = 1.0
    masks[0, 2, 0] = 0.5
    out = head_on_white(frames, masks)
    assert (out[0, :2] == 10).all()
    assert (out[0, 3] == 255).all()
    assert out[0, 2, 0, 0] == 133  # 132.5 rounds half up
