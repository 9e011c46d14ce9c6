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
