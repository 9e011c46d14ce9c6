"""Per-frame timestamps from capture to display, and the latency table they give.

Each stage stamps a frame's sequence number as it enters and leaves, on the
machine-wide monotonic clock. On loopback both ends share that clock, so one
subtraction gives each module's time inside the running system (the paper's
Table 1, right column) and the end-to-end latency.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

#: (row label, stamp where it starts, stamp where it ends)
MODULES: tuple[tuple[str, str, str], ...] = (
    ("extract", "extract_in", "extract_out"),
    ("encode", "encode_in", "encode_out"),
    ("transport", "encode_out", "receive"),
    ("decode", "receive", "decode_out"),
    ("playout wait", "decode_out", "render_in"),
    ("generate", "render_in", "render_out"),
    ("display", "render_out", "display"),
    ("end to end", "capture", "display"),
)

#: the paper's Table 1 (RTT 20 ms, two RTX 4090): module -> (alone, in the full system), ms
PAPER_MS: dict[str, tuple[float | None, float | None]] = {
    "extract": (14.7, 25.6),
    "encode": (0.5, 0.8),
    "transport": (12.5, 13.7),
    "decode": (0.15, 0.21),
    "generate": (27.6, 49.2),
    "end to end": (None, 89.5),
}


#: frames a StampLog keeps by default: five minutes at 20 fps
STAMP_WINDOW = 6000


class StampLog:
    """Thread-safe store of ``seq -> {stamp name: monotonic seconds}`` for the newest ``limit`` frames.

    A call stamps every frame for as long as it runs, so the oldest frames make way for new
    ones: the latency figures describe the last few minutes of a long call, and its memory
    stays flat (``bench soak`` saw a call grow by 0.5 MB a minute when the log only filled
    up). The window is also far shorter than the 16-bit sequence numbers take to wrap, so a
    wrapped number never finds an old frame's row.
    """

    def __init__(self, limit: int = STAMP_WINDOW) -> None:
        self._stamps: dict[int, dict[str, float]] = {}
        self._lock = threading.Lock()
        self._limit = limit

    def mark(self, key: int, name: str, t: float) -> None:
        with self._lock:
            row = self._stamps.get(key)
            if row is None:
                if len(self._stamps) >= self._limit:
                    del self._stamps[next(iter(self._stamps))]  # the oldest: dicts keep insertion order
                row = self._stamps[key] = {}
            row.setdefault(name, t)

    def rows(self) -> dict[int, dict[str, float]]:
        with self._lock:
            return {k: dict(v) for k, v in self._stamps.items()}


@dataclass(frozen=True)
class ModuleLatency:
    module: str
    frames: int
    median_ms: float
    p95_ms: float
    max_ms: float

    def to_dict(self) -> dict:
        return {"module": self.module, "frames": self.frames, "median_ms": round(self.median_ms, 3),
                "p95_ms": round(self.p95_ms, 3), "max_ms": round(self.max_ms, 3)}


def module_latencies(rows: dict[int, dict[str, float]]) -> list[ModuleLatency]:
    """Medians over every frame that passed both stamps of a module."""
    out = []
    for label, start, end in MODULES:
        ms = [1e3 * (r[end] - r[start]) for r in rows.values() if start in r and end in r]
        if ms:
            a = np.asarray(ms)
            out.append(ModuleLatency(label, len(a), float(np.median(a)), float(np.percentile(a, 95)), float(a.max())))
    return out
