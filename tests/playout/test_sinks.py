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


def test_the_window_moves_the_view_with_arrow_keys(monkeypatch):
    pygame = __import__("pytest").importorskip("pygame", reason="the window needs the optional view extra")
    from nerfconf.playout.sinks import WindowSink

    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")  # a real pygame window, on SDL's off-screen driver
    monkeypatch.setenv("DISPLAY", ":0")
    window = WindowSink("test", (64, 64))
    try:
        assert window.view is None  # the sender's own view until a key is pressed
        for key in (pygame.K_RIGHT, pygame.K_RIGHT, pygame.K_UP):
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key))
        window.write(np.zeros((32, 32, 3), np.uint8))
        assert (window.view.yaw, window.view.pitch) == (10.0, -5.0)
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_r))
        window.write(np.zeros((32, 32, 3), np.uint8))
        assert window.view is None
        assert not window.closed
        pygame.event.post(pygame.event.Event(pygame.QUIT))
        window.write(np.zeros((32, 32, 3), np.uint8))
        assert window.closed  # the receiver hangs up on this
    finally:
        window.close()
