"""The viewer's controls, orbit video and strip of views."""

import av
import numpy as np
import pytest

from nerfconf.avatar.rendering.fast import Renderer
from nerfconf.avatar.view import View
from nerfconf.playout.viewer import (
    KEY_STEP_DEG,
    STRIP_VIEWS,
    ViewControl,
    orbit_strip,
    run_window,
    write_orbit_video,
)

from ..avatar.tiny_avatar import RESOLUTION, tiny_bundle, tiny_track


def test_keys_and_drags_move_the_view_within_limits():
    c = ViewControl()
    assert c.effective is None
    c = c.key("right").key("right").key("up")
    assert (c.view.yaw, c.view.pitch) == (2 * KEY_STEP_DEG, -KEY_STEP_DEG)
    for _ in range(20):
        c = c.key("left")
    assert c.view.yaw == -45.0
    c = c.drag(1000, -1000)
    assert (c.view.yaw, c.view.pitch) == (45.0, -45.0)
    assert c.key("a").view.absolute and c.key("a").effective is not None
    assert c.key("r").view == View() and c.key("x") == c


def test_orbit_video_and_strip(tmp_path):
    renderer = Renderer(tiny_bundle())
    track = tiny_track(6)
    path = write_orbit_video(renderer, track, tmp_path / "o.mp4", frames=8, fps=10)
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 8 and frames[0].shape == (RESOLUTION, RESOLUTION, 3)
    assert np.abs(frames[0].astype(int) - frames[2].astype(int)).mean() > 0.5  # the view moved
    strip = orbit_strip(renderer, track.params(0))
    assert strip.shape == (RESOLUTION, RESOLUTION * len(STRIP_VIEWS), 3)
    panels = np.split(strip, len(STRIP_VIEWS), axis=1)
    assert all(np.abs(panels[1].astype(int) - p.astype(int)).mean() > 0.5 for i, p in enumerate(panels) if i != 1)


def test_window_turns_the_view_on_keys_and_quits(monkeypatch):
    pygame = pytest.importorskip("pygame")
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    renderer = Renderer(tiny_bundle())
    render = renderer.render
    seen = []

    def scripted(params, view=None, background=None):
        seen.append(view)
        if len(seen) == 1:
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_RIGHT))
        else:
            pygame.event.post(pygame.event.Event(pygame.QUIT))
        return render(params, view, background)

    monkeypatch.setattr(renderer, "render", scripted)
    run_window(renderer, tiny_track(3), fps=1000)
    assert seen[0] is None and seen[1] == View(KEY_STEP_DEG, 0.0)
