"""Bounds the emulator's settings and traces share: outside them a value describes no network."""

from __future__ import annotations

import math

from nerfconf.net.errors import NetemError

#: the longest one-way delay (and jitter) a link accepts: beyond it nothing is a network condition
MAX_DELAY_MS = 10_000.0
#: the slowest rate a link or a trace segment may serve at (1 bit/s); below it, and at subnormal rates,
#: one packet's service time is no longer a finite number of seconds
MIN_RATE_KBPS = 0.001
#: the shortest AlphaRTC segment; the traces are written in milliseconds
MIN_SEGMENT_MS = 1.0


def check_range(name: str, value: object, lo: float, hi: float = math.inf, unit: str = "") -> float:
    """``value`` as a float if it is a finite number in ``lo..hi``; NetemError naming ``name`` otherwise."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise NetemError(f"{name} must be a number, got {value!r}") from None
    if not (math.isfinite(number) and lo <= number <= hi):  # NaN fails every comparison, so test it first
        bound = f"{lo:g}..{hi:g}{unit}" if math.isfinite(hi) else f"finite and at least {lo:g}{unit}"
        raise NetemError(f"{name} must be {bound}, got {number:g}")
    return number
