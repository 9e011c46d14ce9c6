import shutil

import numpy as np
import pytest

from nerfconf.capture.video import VideoError, probe, read_frames

from ..conftest import shared_data


def test_probe_and_read():
    path = shared_data("short_1.mp4")
    info = probe(path)
    frames = list(read_frames(path, stop=10))
    assert len(frames) == 10 and frames[0].image.shape == (info.height, info.width, 3)
    assert frames[0].image.dtype == np.uint8
    assert [f.index for f in frames] == list(range(10))
    times = [f.t_capture for f in frames]
    # presentation times, gaps included (this clip is variable frame rate)
    assert times[0] >= 0 and np.all(np.diff(times) > 0) and times[-1] < 10 / info.fps * 2


def test_resampling_keeps_the_requested_rate():
    path = shared_data("cnn2_25fps.mp4")
    frames = list(read_frames(path, stop=100, fps=20))
    assert len(frames) == 80
    assert np.all(np.diff([f.t_capture for f in frames]) <= 0.08 + 1e-6)


def test_unreadable_and_missing_files_are_named(tmp_path):
    fake = tmp_path / "fake.mp4"
    fake.write_text("this is not a video")
    with pytest.raises(VideoError, match="fake.mp4"):
        list(read_frames(fake))
    with pytest.raises(VideoError, match="no such file"):
        probe(tmp_path / "missing.mp4")


def test_truncated_video_fails_cleanly_or_stops_early(tmp_path):
    src = shared_data("short_1.mp4")
    cut = tmp_path / "cut.mp4"
    shutil.copy(src, cut)
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    try:
        frames = list(read_frames(cut))
    except VideoError as exc:
        assert "cut.mp4" in str(exc)
    else:
        assert len(frames) < probe(src).frames
