"""Looking at an avatar from anywhere: an interactive window, an orbit video, a strip of views.

``ViewControl`` is the window's state without any I/O (keys and mouse drags in,
a ``View`` out), so it is testable without a display. The window itself uses
pygame (the optional ``view`` extra); the video is written with PyAV.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from nerfconf.avatar.rendering.fast import Renderer
from nerfconf.avatar.view import View, orbit
from nerfconf.tracks import ParamTrack
from nerfconf.types import FaceParams

#: Degrees per arrow-key press, and per pixel of mouse drag.
KEY_STEP_DEG = 5.0
DRAG_DEG_PER_PX = 0.3

#: The strip's views: (yaw, pitch) in degrees, absolute (relative to looking straight at the camera).
STRIP_VIEWS = ((-45.0, 0.0), (0.0, 0.0), (45.0, 0.0), (0.0, -30.0), (0.0, 30.0))


@dataclass(frozen=True)
class ViewControl:
    """The viewer's view state: offsets from the sender's pose, or an absolute view."""

    view: View = View()

    def key(self, name: str) -> ViewControl:
        """``left``/``right`` yaw, ``up``/``down`` pitch, ``q``/``e`` roll, ``a`` absolute on/off, ``r`` reset."""
        v = self.view
        steps = {"left": (-1, 0, 0), "right": (1, 0, 0), "up": (0, -1, 0), "down": (0, 1, 0),
                 "q": (0, 0, -1), "e": (0, 0, 1)}
        if name in steps:
            dy, dp, dr = (KEY_STEP_DEG * s for s in steps[name])
            return ViewControl(View.clamped(v.yaw + dy, v.pitch + dp, v.roll + dr, v.absolute))
        if name == "a":
            return ViewControl(replace(v, absolute=not v.absolute))
        if name == "r":
            return ViewControl(View())
        return self

    def drag(self, dx_px: float, dy_px: float) -> ViewControl:
        """Dragging right turns the head to the right of the screen; dragging down tilts it down."""
        v = self.view
        return ViewControl(View.clamped(v.yaw + DRAG_DEG_PER_PX * dx_px, v.pitch + DRAG_DEG_PER_PX * dy_px,
                                        v.roll, v.absolute))

    @property
    def effective(self) -> View | None:
        """None (the sender's own view) when there is no offset."""
        v = self.view
        return None if not v.absolute and v.yaw == v.pitch == v.roll == 0 else v


def track_frames(track: ParamTrack, count: int) -> Iterator[FaceParams]:
    """``count`` frames of a track, looping it."""
    for i in range(count):
        yield track.params(i % len(track))


def write_orbit_video(renderer: Renderer, track: ParamTrack, path: str | Path, *, frames: int | None = None,
                      fps: float = 25.0, yaw_deg: float = 35.0, pitch_deg: float = 15.0,
                      progress: bool = False) -> Path:
    """Plays the track while the view orbits once around the head; H.264 mp4."""
    import av  # noqa: PLC0415

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = frames or len(track)
    views = orbit(frames, yaw_deg, pitch_deg)
    items = zip(track_frames(track, frames), views)
    if progress:
        from tqdm import tqdm  # noqa: PLC0415

        items = tqdm(items, total=frames, unit="frame", desc="orbit video")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=round(fps))
        stream.width = stream.height = renderer.resolution
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18"}
        for params, view in items:
            image = renderer.render(params, view).image
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def orbit_strip(renderer: Renderer, params: FaceParams) -> np.ndarray:
    """One frame's expression seen from ``STRIP_VIEWS``, side by side (R, 5R, 3) uint8."""
    return np.concatenate([renderer.render(params, View(y, p, absolute=True)).image for y, p in STRIP_VIEWS],
                          axis=1)


def run_window(renderer: Renderer, track: ParamTrack, fps: float = 25.0) -> None:
    """Plays the track in a window; arrows/drag move the view, a toggles absolute, r resets, Esc quits."""
    import pygame  # noqa: PLC0415

    keys = {pygame.K_LEFT: "left", pygame.K_RIGHT: "right", pygame.K_UP: "up", pygame.K_DOWN: "down",
            pygame.K_q: "q", pygame.K_e: "e", pygame.K_a: "a", pygame.K_r: "r"}
    pygame.init()
    try:
        side = max(renderer.resolution, 512)
        screen = pygame.display.set_mode((side, side))
        clock = pygame.time.Clock()
        control = ViewControl()
        dragging = False
        i = 0
        while True:
            for event in pygame.event.get():
                if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE):
                    return
                if event.type == pygame.KEYDOWN and event.key in keys:
                    control = control.key(keys[event.key])
                elif event.type == pygame.MOUSEBUTTONDOWN:
                    dragging = True
                elif event.type == pygame.MOUSEBUTTONUP:
                    dragging = False
                elif event.type == pygame.MOUSEMOTION and dragging:
                    control = control.drag(*event.rel)
            frame = renderer.render(track.params(i % len(track)), control.effective)
            surface = pygame.surfarray.make_surface(frame.image.swapaxes(0, 1))
            screen.blit(pygame.transform.smoothscale(surface, (side, side)), (0, 0))
            v = control.view
            pygame.display.set_caption(f"nerfconf view: yaw {v.yaw:+.0f}° pitch {v.pitch:+.0f}° roll {v.roll:+.0f}°"
                                       f"{' absolute' if v.absolute else ''}, {frame.timings.get('render_ms', 0):.0f} ms")
            pygame.display.flip()
            clock.tick(fps)
            i += 1
    finally:
        pygame.quit()
