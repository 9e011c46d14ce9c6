"""The video sender's target bitrate (sans-I/O): GCC's loss-based controller, capped by what arrives.

On each loss report (every ~250 ms): over 10 % lost, the target drops by half the
loss fraction; under 2 %, it grows by 8 % a second; between them it holds. It
never grows past 1.5x the rate the receiver reports receiving plus 10 kbps (GCC's
bound by the acknowledged rate, so a target never runs far ahead of a link that
delivers less without dropping; an encoder that undershoots on a still picture
does not pull the target down by it), nor past the ceiling both ends agreed on,
and never falls under ``min_kbps``. Decreases happen at most once per ``cooldown``: a
report that still counts the losses of the previous decrease does not cut again.

What GCC adds and this does not: a delay-based controller, which backs off when
queues grow before they drop anything. A rate-capped link with a deep queue is
found by its losses here, and by the receive-rate bound.
"""

from __future__ import annotations

from nerfconf.net.messages import LossReport


class RateController:
    def __init__(self, start_kbps: float, *, min_kbps: float = 8.0, max_kbps: float | None = None,
                 cooldown: float = 0.5) -> None:
        if not 0 < min_kbps <= start_kbps:
            raise ValueError(f"need 0 < min_kbps <= start_kbps, got {min_kbps} and {start_kbps}")
        self.min_kbps = min_kbps
        self.max_kbps = max_kbps if max_kbps is not None else start_kbps
        self.cooldown = cooldown
        self.target = min(start_kbps, self.max_kbps)
        self._last_report: float | None = None
        self._last_decrease: float | None = None
        self.decreases = 0

    def set_ceiling(self, max_kbps: float) -> None:
        self.max_kbps = max(self.min_kbps, max_kbps)
        self.target = min(self.target, self.max_kbps)

    def on_report(self, report: LossReport, now: float) -> float:
        dt = 0.0 if self._last_report is None else min(now - self._last_report, 1.0)
        self._last_report = now
        loss = report.loss
        if loss > 0.10:
            if self._last_decrease is None or now - self._last_decrease >= self.cooldown:
                self.target *= 1 - 0.5 * loss
                self._last_decrease = now
                self.decreases += 1
        elif loss < 0.02:
            bound = 1.5 * report.received_kbps + 10 if report.received_kbps > 0 else float("inf")
            self.target = max(self.target, min(self.target * 1.08 ** dt, bound))
        self.target = min(max(self.target, self.min_kbps), self.max_kbps)
        return self.target
