"""Receiver-side playout: a jitter buffer with adaptive delay and pose concealment."""

from nerfconf.playout.buffer import PlayoutBuffer, PlayoutConfig, PlayoutFrame, PlayoutStats
from nerfconf.playout.conceal import extrapolate, geodesic, interpolate

__all__ = [
    "PlayoutBuffer",
    "PlayoutConfig",
    "PlayoutFrame",
    "PlayoutStats",
    "extrapolate",
    "geodesic",
    "interpolate",
]
