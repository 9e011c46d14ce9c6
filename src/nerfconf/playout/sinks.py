"""Where received frames go: an mp4 file, or a window when there is a screen."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np


class SinkError(RuntimeError):
    """A display or file sink could not be opened."""


class VideoFileSink:
    """H.264 mp4 through PyAV; frames are RGB uint8 of one fixed size."""

    def __init__(self, path: str | Path, *, fps: float, size: int | tuple[int, int], quality: str = "normal") -> None:
        import av  # noqa: PLC0415

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        w, h = (size, size) if isinstance(size, int) else size
        # yuv420p needs even sides
        self.width, self.height = w + w % 2, h + h % 2
        try:
            self._container = av.open(str(self.path), mode="w")
        except (OSError, av.FFmpegError) as exc:
            raise SinkError(f"cannot write {self.path}: {exc}") from exc
        self._stream = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        self._stream.width, self._stream.height = self.width, self.height
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": "12" if quality == "high" else "20", "preset": "veryfast"}
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        import av  # noqa: PLC0415

        if image.shape[0] != self.height or image.shape[1] != self.width:
            padded = np.full((self.height, self.width, 3), 255, np.uint8)
            padded[: image.shape[0], : image.shape[1]] = image[: self.height, : self.width]
            image = padded
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._container is None:
            return
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None

    def __enter__(self) -> VideoFileSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class WindowSink:
    """A pygame window; pygame is optional (``pip install 'nerfconf[view]'``).

    Arrow keys and mouse drags move the view, as in ``nerfconf view`` (``a``
    toggles an absolute view, ``r`` resets); the receiver reads :attr:`view`
    for each frame it renders.
    """

    controls_view = True

    def __init__(self, title: str, size: tuple[int, int], view=None) -> None:
        from nerfconf.avatar.view import View  # noqa: PLC0415
        from nerfconf.playout.viewer import ViewControl  # noqa: PLC0415

        try:
            import pygame  # noqa: PLC0415
        except ImportError as exc:
            raise SinkError("showing a window needs pygame: pip install 'nerfconf[view]'") from exc
        if not has_display():
            raise SinkError("no display: set DISPLAY, or write the video to a file with --save")
        self._pg = pygame
        pygame.display.init()
        self._screen = pygame.display.set_mode(size)
        pygame.display.set_caption(title)
        self.closed = False
        self._control = ViewControl(view or View())
        self._dragging = False
        self._keys = {pygame.K_LEFT: "left", pygame.K_RIGHT: "right", pygame.K_UP: "up", pygame.K_DOWN: "down",
                      pygame.K_q: "q", pygame.K_e: "e", pygame.K_a: "a", pygame.K_r: "r"}

    @property
    def view(self):
        return self._control.effective

    def write(self, image: np.ndarray) -> None:
        pg = self._pg
        for event in pg.event.get():
            if event.type == pg.QUIT:
                self.closed = True
            elif event.type == pg.KEYDOWN and event.key in self._keys:
                self._control = self._control.key(self._keys[event.key])
            elif event.type == pg.MOUSEBUTTONDOWN:
                self._dragging = True
            elif event.type == pg.MOUSEBUTTONUP:
                self._dragging = False
            elif event.type == pg.MOUSEMOTION and self._dragging:
                self._control = self._control.drag(*event.rel)
        surface = pg.surfarray.make_surface(np.ascontiguousarray(image.swapaxes(0, 1)))
        self._screen.blit(pg.transform.scale(surface, self._screen.get_size()), (0, 0))
        pg.display.flip()

    def close(self) -> None:
        self._pg.display.quit()
