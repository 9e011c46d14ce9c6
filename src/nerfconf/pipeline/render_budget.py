"""How big a receiver renders, so that every frame slot gets a fresh frame on the host it runs on.

A frame's render cost grows with its pixel count, and hosts differ fivefold in what
they do per second (docs/avatar.md, GMAC-equivalents). A call on a host too slow for
full size must not drop frames or let latency grow: it renders smaller and scales the
image up, and says so. ``ResolutionGovernor`` is that decision, kept free of I/O and
clocks so it can be tested with made-up render times: the render process feeds it
each frame's render time and renders at whatever size it answers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

#: rungs are multiples of this many pixels (the renderer's upsampling grid divides them)
STEP = 16


@dataclass(frozen=True)
class BudgetConfig:
    """When to render smaller, and when to go back up."""

    fps: float = 20.0
    #: share of the frame period one render may take: the rest of the host (capture, tracking,
    #: display, the other party of a call on one machine) needs time too, and render times jitter
    share: float = 0.7
    #: renders measured (median) before each decision
    window: int = 8
    #: renders at a size before trying the next size up, so that a size does not flap
    settle: int = 40
    #: go up only when the next size up is predicted to take at most this share of the budget
    headroom: float = 0.8
    #: the smallest size, as a fraction of the full side
    min_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.fps <= 0 or not 0 < self.share <= 1 or not 0 < self.headroom <= 1:
            raise ValueError("fps must be positive, share and headroom in (0, 1]")
        if self.window < 1 or self.settle < self.window or not 0 < self.min_fraction <= 1:
            raise ValueError("window must be >= 1, settle >= window, min_fraction in (0, 1]")

    @property
    def budget_s(self) -> float:
        return self.share / self.fps


def ladder(full: int, min_fraction: float = 0.5) -> tuple[int, ...]:
    """Sizes from ``full`` down to about ``full * min_fraction``, about an eighth of the side apart."""
    step = max(STEP, full // 8 // STEP * STEP)
    floor = max(STEP, int(full * min_fraction))
    # multiples of the step, the first a whole step below full: a side that is not a multiple
    # (200) must not get a rung (192) too close to it to be worth the change
    smaller = [r for r in range(full // step * step, floor - 1, -step) if r <= full - step]
    return (full, *smaller)


def to_full_size(image: np.ndarray, side: int) -> np.ndarray:
    """A frame rendered smaller, scaled up to the ``side`` the display and recordings expect."""
    if image.shape[0] == side and image.shape[1] == side:
        return image
    import cv2  # noqa: PLC0415

    return cv2.resize(image, (side, side), interpolation=cv2.INTER_LINEAR)


class ResolutionGovernor:
    """Picks the render size from measured render times: down at once when over budget, up slowly."""

    def __init__(self, full: int, config: BudgetConfig | None = None) -> None:
        self.config = config or BudgetConfig()
        self.sizes = ladder(full, self.config.min_fraction)
        self._rung = 0
        self._recent: deque[float] = deque(maxlen=self.config.window)
        self._since_change = 0
        self.changes = 0

    @property
    def resolution(self) -> int:
        return self.sizes[self._rung]

    def observe(self, render_s: float) -> int | None:
        """One render's wall time at the current size; returns the new size when it changes."""
        cfg = self.config
        self._recent.append(render_s)
        self._since_change += 1
        if len(self._recent) < cfg.window:
            return None
        median = float(np.median(self._recent))
        now = self.resolution
        if median > cfg.budget_s:
            # cost scales with pixels: the largest size whose predicted time fits, or the smallest
            fits = [i for i, r in enumerate(self.sizes) if median * (r / now) ** 2 <= cfg.budget_s]
            return self._move(fits[0] if fits else len(self.sizes) - 1)
        if self._rung > 0 and self._since_change >= cfg.settle:
            up = self.sizes[self._rung - 1]
            if median * (up / now) ** 2 <= cfg.headroom * cfg.budget_s:
                return self._move(self._rung - 1)
        return None

    def _move(self, rung: int) -> int | None:
        if rung == self._rung:
            return None
        self._rung = rung
        self._recent.clear()
        self._since_change = 0
        self.changes += 1
        return self.resolution
