import logging

import av
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


def _remux(src, dst, **options):
    """The same packets in a new mp4 container (with ``movflags=faststart`` the index comes first)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", options=options) as out:
        stream = inp.streams.video[0]
        copy = out.add_stream_from_template(stream)
        for packet in inp.demux(stream):
            if packet.dts is not None:
                packet.stream = copy
                out.mux(packet)


def test_a_truncated_video_without_its_index_is_refused_by_name(tmp_path):
    cut = tmp_path / "cut.mp4"
    data = shared_data("short_1.mp4").read_bytes()  # its index (moov) sits at the end
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="cut.mp4: not a readable video"):
        list(read_frames(cut))


def test_a_truncated_video_with_its_index_first_is_read_to_the_cut_with_a_warning(tmp_path, caplog):
    src = shared_data("short_1.mp4")
    whole, cut = tmp_path / "whole.mp4", tmp_path / "cut.mp4"
    _remux(src, whole, movflags="faststart")
    with caplog.at_level(logging.WARNING, logger="nerfconf.capture.video"):
        assert len(list(read_frames(whole, size=16))) == probe(src).frames
        assert not caplog.records  # a whole file reads without a word
        data = whole.read_bytes()
        cut.write_bytes(data[: len(data) // 2])
        frames = list(read_frames(cut, size=16))
    assert 0 < len(frames) < probe(src).frames
    assert [r.getMessage() for r in caplog.records] == [
        f"{cut}: the video ends after {len(frames)} of the {probe(src).frames} frames its header lists "
        "(truncated?); using those"]
