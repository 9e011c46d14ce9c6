"""Network traces the emulator replays: AlphaRTC JSON patterns and Mahimahi delivery traces.

* AlphaRTC (OpenNetLab gym): ``{"uplink": {"trace_pattern": [{"duration": ms,
  "capacity": kbps, "loss": p, "rtt": ms, "jitter": ms}, ...]}}``; only
  duration and capacity are required. The pattern repeats when it ends.
  A capacity of 0 is an outage; a pattern must deliver in at least one segment.
* Mahimahi: one millisecond timestamp per line, each an opportunity to
  deliver 1500 bytes; it repeats with the period of its last timestamp.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path

import numpy as np

from nerfconf.net.errors import NetemError
from nerfconf.net.netem.limits import MAX_DELAY_MS, MIN_RATE_KBPS, MIN_SEGMENT_MS, check_range

MAHIMAHI_MTU = 1500


@dataclass(frozen=True)
class TraceSegment:
    duration_s: float
    capacity_kbps: float
    loss: float | None = None
    rtt_ms: float | None = None
    jitter_ms: float | None = None

    def __post_init__(self) -> None:
        # named as the JSON fields, in their units
        check_range("duration", self.duration_s * 1000, MIN_SEGMENT_MS, unit=" ms")
        capacity = check_range("capacity", self.capacity_kbps, 0.0, unit=" kbps")
        if 0 < capacity < MIN_RATE_KBPS:
            raise NetemError(f"capacity must be 0 (an outage) or at least {MIN_RATE_KBPS:g} kbps, "
                             f"got {capacity:g}")
        if self.loss is not None:
            check_range("loss", self.loss, 0.0, 1.0)
        if self.rtt_ms is not None:
            check_range("rtt", self.rtt_ms, 0.0, 2 * MAX_DELAY_MS, " ms")
        if self.jitter_ms is not None:
            check_range("jitter", self.jitter_ms, 0.0, MAX_DELAY_MS, " ms")


@dataclass(frozen=True)
class AlphaRtcTrace:
    segments: tuple[TraceSegment, ...]
    name: str = ""
    #: where each segment ends within the period (s), and the bits the pattern has served by then
    _ends: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _served: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.segments:
            raise NetemError("the trace_pattern is empty")
        if all(s.capacity_kbps == 0 for s in self.segments):
            raise NetemError("every segment has capacity 0: the trace never delivers anything")
        object.__setattr__(self, "_ends", tuple(accumulate(s.duration_s for s in self.segments)))
        bits = (s.capacity_kbps * 1000 * s.duration_s for s in self.segments)
        object.__setattr__(self, "_served", tuple(accumulate(bits)))

    @property
    def period_s(self) -> float:
        return self._ends[-1]

    def segment_at(self, t: float) -> tuple[int, float]:
        """Index of the segment in force at time ``t`` (s, repeating), and when it ends."""
        cycle = math.floor(t / self.period_s)
        i = bisect_right(self._ends, t - cycle * self.period_s)
        if i == len(self._ends):  # t is a period's end, once rounded
            cycle, i = cycle + 1, 0
        return i, cycle * self.period_s + self._ends[i]

    def departure(self, start: float, bits: float) -> float:
        """When ``bits`` that start service at ``start`` have crossed the link.

        Computed from the bits each period serves rather than by walking the segments, so
        its cost does not grow with how long the packet waits (a slow segment, many short
        ones): a walk there held the event loop for minutes.
        """
        if bits <= 0:
            return start
        period, per_period = self.period_s, self._served[-1]
        cycle = math.floor(start / period)
        offset = start - cycle * period
        i = min(bisect_right(self._ends, offset), len(self._ends) - 1)
        seg_start = self._ends[i - 1] if i else 0.0
        served_before = (self._served[i - 1] if i else 0.0) + self._bps(i) * (offset - seg_start)
        cycles, rest = divmod(served_before + bits, per_period)
        if rest == 0:  # the last bit leaves as a period's last delivering segment ends
            cycles, rest = cycles - 1, per_period
        # the first segment by whose end the period has served ``rest`` bits; it delivers (capacity > 0)
        j = bisect_left(self._served, rest)
        seg_start = self._ends[j - 1] if j else 0.0
        t = seg_start + (rest - (self._served[j - 1] if j else 0.0)) / self._bps(j)
        return max(start, (cycle + cycles) * period + t)

    def _bps(self, i: int) -> float:
        return self.segments[i].capacity_kbps * 1000


def _number(seg: dict, key: str) -> float | None:
    value = seg.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise NetemError(f"{key} must be a number, got {value!r}")
    try:
        return float(value)
    except OverflowError:  # an integer too large for a float: out of every range, as infinity is
        return math.inf


def load_alphartc(path: str | Path) -> AlphaRtcTrace:
    path = Path(path)
    try:
        pattern = json.loads(path.read_text())["uplink"]["trace_pattern"]
    except (OSError, KeyError, TypeError, ValueError, RecursionError) as exc:
        raise NetemError(f"{path} is not an AlphaRTC trace: {exc}") from exc
    if not isinstance(pattern, list):
        raise NetemError(f"{path} is not an AlphaRTC trace: trace_pattern is not a list")
    segments = []
    for i, seg in enumerate(pattern):
        try:
            if not isinstance(seg, dict):
                raise NetemError("a segment must be a JSON object")
            duration, capacity = _number(seg, "duration"), _number(seg, "capacity")
            if duration is None or capacity is None:
                raise NetemError("duration and capacity are required")
            segments.append(TraceSegment(duration / 1000.0, capacity, _number(seg, "loss"), _number(seg, "rtt"),
                                         _number(seg, "jitter")))
        except NetemError as exc:
            raise NetemError(f"{path}: trace_pattern[{i}]: {exc}") from None
    try:
        return AlphaRtcTrace(tuple(segments), path.name)
    except NetemError as exc:
        raise NetemError(f"{path}: {exc}") from None


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
