import numpy as np
import pytest

from nerfconf.capture.source import CameraError, SourceSpec, frames
from nerfconf.playout.sinks import VideoFileSink


def _clip(path, n=8, fps=25):
    with VideoFileSink(path, fps=fps, size=32) as sink:
        for i in range(n):
            sink.write(np.full((32, 32, 3), 25 * i, np.uint8))
    return path


def test_a_video_plays_paced_at_the_call_rate_with_fresh_numbers_and_clock(tmp_path):
    spec = SourceSpec(video=_clip(tmp_path / "c.mp4", n=10, fps=20), fps=20)
    got = list(frames(spec))
    assert [f.index for f in got] == list(range(10))
    gaps = np.diff([f.t_capture for f in got])
    assert gaps.min() > 0.03 and np.median(gaps) == pytest.approx(0.05, abs=0.01)


def test_a_slow_reader_skips_frames_and_keeps_their_numbers_on_the_clock(tmp_path):
    import time

    spec = SourceSpec(video=_clip(tmp_path / "c.mp4", n=3), fps=20, loop=True)
    got = []
    for f in frames(spec, stop=lambda: len(got) >= 8):
        got.append(f)
        time.sleep(0.12)  # a reader that takes two and a half frame periods per frame
    start = got[0].t_capture
    # frame n is captured n / fps after the first, give or take a frame, however slow the reader
    for f in got:
        assert abs((f.t_capture - start) - f.index / 20) <= 0.06, (f.index, f.t_capture - start)
    assert got[-1].index >= 14 and len({f.index for f in got}) == len(got)


def test_a_looping_source_stops_when_asked(tmp_path):
    spec = SourceSpec(video=_clip(tmp_path / "c.mp4", n=3), fps=100, paced=False, loop=True)
    seen = []
    for f in frames(spec, stop=lambda: len(seen) >= 7):
        seen.append(f)
    assert len(seen) == 7


def test_source_errors_are_clear():
    with pytest.raises(ValueError, match="exactly one"):
        SourceSpec()
    with pytest.raises(CameraError, match="no camera at index 57"):
        next(frames(SourceSpec(camera=57)))
