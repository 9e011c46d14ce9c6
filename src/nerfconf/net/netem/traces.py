"""Network traces the emulator replays: AlphaRTC JSON patterns and Mahimahi delivery traces.

* AlphaRTC (OpenNetLab gym): ``{"uplink": {"trace_pattern": [{"duration": ms,
  "capacity": kbps, "loss": p, "rtt": ms, "jitter": ms}, ...]}}``; only
  duration and capacity are required. The pattern repeats when it ends.
* Mahimahi: one millisecond timestamp per line, each an opportunity to
  deliver 1500 bytes; it repeats with the period of its last timestamp.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerfconf.net.errors import NetemError

MAHIMAHI_MTU = 1500


@dataclass(frozen=True)
class TraceSegment:
    duration_s: float
    capacity_kbps: float
    loss: float | None = None
    rtt_ms: float | None = None
    jitter_ms: float | None = None


@dataclass(frozen=True)
class AlphaRtcTrace:
    segments: tuple[TraceSegment, ...]
    name: str = ""

    @property
    def period_s(self) -> float:
        return sum(s.duration_s for s in self.segments)

    def segment_at(self, t: float) -> tuple[int, float]:
        """Index of the segment in force at time ``t`` (s, repeating), and when it ends."""
        period = self.period_s
        base = (t // period) * period
        offset = t - base
        end = 0.0
        for i, seg in enumerate(self.segments):
            end += seg.duration_s
            if offset < end:
                return i, base + end
        return len(self.segments) - 1, base + period


def load_alphartc(path: str | Path) -> AlphaRtcTrace:
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
        pattern = obj["uplink"]["trace_pattern"]
        segments = []
        for i, seg in enumerate(pattern):
            duration = float(seg["duration"]) / 1000.0
            capacity = float(seg["capacity"])
            loss = seg.get("loss")
            if duration <= 0 or capacity < 0 or (loss is not None and not 0 <= float(loss) <= 1):
                raise ValueError(f"segment {i} has a non-positive duration, a negative capacity or a loss outside 0..1")
            segments.append(TraceSegment(
                duration, capacity,
                None if loss is None else float(loss),
                None if seg.get("rtt") is None else float(seg["rtt"]),
                None if seg.get("jitter") is None else float(seg["jitter"]),
            ))
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise NetemError(f"{path} is not an AlphaRTC trace: {exc}") from exc
    if not segments:
        raise NetemError(f"{path} has an empty trace_pattern")
    return AlphaRtcTrace(tuple(segments), path.name)


@dataclass(frozen=True)
class MahimahiTrace:
    #: delivery opportunities in seconds, sorted, within one period
    opportunities: np.ndarray
    period_s: float
    name: str = ""

    def first_at_or_after(self, t: float) -> int:
        """Global index (counting repeats) of the first opportunity at or after ``t``."""
        n = len(self.opportunities)
        cycle = int(t // self.period_s)
        offset = t - cycle * self.period_s
        i = int(np.searchsorted(self.opportunities, offset - 1e-12, side="left"))
        return cycle * n + i  # i == n rolls into the next cycle's first opportunity

    def time_of(self, index: int) -> float:
        n = len(self.opportunities)
        cycle, i = divmod(index, n)
        return cycle * self.period_s + float(self.opportunities[i])


def load_mahimahi(path: str | Path) -> MahimahiTrace:
    path = Path(path)
    try:
        values = np.array([int(line) for line in path.read_text().split()], dtype=np.int64)
    except (OSError, ValueError) as exc:
        raise NetemError(f"{path} is not a Mahimahi trace (one integer millisecond per line): {exc}") from exc
    if len(values) == 0 or values.min() < 0 or np.any(np.diff(values) < 0):
        raise NetemError(f"{path}: a Mahimahi trace needs non-decreasing, non-negative timestamps")
    period_ms = int(values[-1])
    if period_ms <= 0:
        raise NetemError(f"{path}: the last timestamp (the trace's period) must be positive")
    # mm-link treats a timestamp equal to the period as the start of the next repeat
    return MahimahiTrace(values.astype(np.float64) / 1000.0, period_ms / 1000.0, path.name)
