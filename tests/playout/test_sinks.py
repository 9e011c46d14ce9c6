import numpy as np

from nerfconf.capture.video import probe, read_all
from nerfconf.playout.sinks import VideoFileSink


def test_the_file_sink_writes_every_frame_at_the_given_rate(tmp_path):
    path = tmp_path / "out.mp4"
    with VideoFileSink(path, fps=20, size=(40, 30)) as sink:
        for i in range(12):
            sink.write(np.full((30, 40, 3), 20 * i, np.uint8))
    info = probe(path)
    assert (info.width, info.height) == (40, 30) and abs(info.fps - 20) < 1e-6
    frames, _ = read_all(path)
    assert len(frames) == 12
    assert abs(float(frames[5].mean()) - 100) < 4
