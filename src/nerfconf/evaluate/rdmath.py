"""Reading rate-distortion curves: the rate at which a codec matches a quality, and BD-rate.

Both interpolate quality against log rate, as rate-distortion comparisons do.

* :func:`match_rate`: the lowest rate at which a codec's curve reaches a target quality,
  linearly interpolated in log rate between the two measured points that straddle it.
* :func:`bd_rate`: the Bjøntegaard delta rate (VCEG-M33) with piecewise-cubic (PCHIP)
  interpolation, as JVET's common test conditions compute it: the mean log-rate difference
  over the quality range both curves cover, as a percentage (negative: the test codec
  needs fewer bits than the anchor for the same quality).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Match", "bd_rate", "match_rate"]


@dataclass(frozen=True)
class Match:
    #: the rate, or the nearest measured rate when the curve does not straddle the target
    kbps: float
    #: "interpolated"; "at-or-below" (the codec's lowest point already reaches the target);
    #: "above" (its highest measured point still falls short)
    how: str

    def __str__(self) -> str:
        return {"interpolated": f"{self.kbps:.1f}", "at-or-below": f"<= {self.kbps:.1f}",
                "above": f"> {self.kbps:.1f}"}[self.how]


def _curve(points: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    pts = sorted((float(r), float(q)) for r, q in points if r > 0 and math.isfinite(q))
    if not pts:
        raise ValueError("no measured points with a positive rate and a finite quality")
    r, q = np.array(pts).T
    return r, q


def match_rate(points: list[tuple[float, float]], target: float, higher_is_better: bool = True) -> Match:
    """The lowest rate at which ``points`` (kbps, quality) reach ``target``."""
    r, q = _curve(points)
    good = q >= target if higher_is_better else q <= target
    if good[0]:
        return Match(float(r[0]), "at-or-below")
    if not good.any():
        return Match(float(r[-1]), "above")
    i = int(np.argmax(good))  # first point that reaches it; the one before does not
    lr0, lr1 = math.log(r[i - 1]), math.log(r[i])
    frac = (target - q[i - 1]) / (q[i] - q[i - 1])
    return Match(float(math.exp(lr0 + frac * (lr1 - lr0))), "interpolated")


def bd_rate(anchor: list[tuple[float, float]], test: list[tuple[float, float]],
            higher_is_better: bool = True) -> float | None:
    """BD-rate of ``test`` against ``anchor`` in percent; None when the quality ranges do not overlap.

    Each curve needs at least two points; quality must rise with rate along each curve
    (points that break monotonicity are dropped, keeping the running best).
    """
    from scipy.interpolate import PchipInterpolator  # noqa: PLC0415

    curves = []
    for points in (anchor, test):
        r, q = _curve(points)
        if not higher_is_better:
            q = -q
        keep = q >= np.maximum.accumulate(q)  # monotone in rate
        r, q = r[keep], q[keep]
        _, first = np.unique(q, return_index=True)
        r, q = r[np.sort(first)], q[np.sort(first)]
        if len(q) < 2:
            return None
        curves.append((q, np.log10(r)))
    lo = max(c[0].min() for c in curves)
    hi = min(c[0].max() for c in curves)
    if hi <= lo:
        return None
    areas = []
    for q, lr in curves:
        f = PchipInterpolator(q, lr).antiderivative()
        areas.append((f(hi) - f(lo)) / (hi - lo))
    return float((10 ** (areas[1] - areas[0]) - 1) * 100)
