"""Uniform scalar quantization between per-dimension bounds taken from training data.

Bounds per dimension rather than one global range is what lets 8 bits suffice:
a low-variance expression component gets the same 256 levels over its own
small range as the jaw gets over its large one (the paper's scheme).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

MIN_BITS = 4
MAX_BITS = 10


@dataclass(frozen=True, eq=False)
class Bounds:
    """Per-dimension ``[lo, hi]``; ships inside the avatar bundle."""

    lo: np.ndarray
    hi: np.ndarray

    def __post_init__(self) -> None:
        lo = np.asarray(self.lo, dtype=np.float64)
        hi = np.asarray(self.hi, dtype=np.float64)
        if lo.ndim != 1 or lo.shape != hi.shape or lo.size == 0:
            raise ValueError(f"bounds need two 1-D arrays of one length, got {lo.shape} and {hi.shape}")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise ValueError("bounds must be finite numbers")
        bad = np.flatnonzero(hi < lo)
        if bad.size:
            raise ValueError(f"bounds have hi < lo in dimension(s) {bad.tolist()}")
        # Canonical float32 values so both peers quantize with bit-identical bounds
        # whatever precision the bundle stored them in.
        object.__setattr__(self, "lo", lo.astype(np.float32).astype(np.float64))
        object.__setattr__(self, "hi", hi.astype(np.float32).astype(np.float64))

    @property
    def dims(self) -> int:
        return int(self.lo.size)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Bounds) and self.canonical_bytes() == other.canonical_bytes()

    def __hash__(self) -> int:
        return hash(self.canonical_bytes())

    @classmethod
    def from_data(cls, values: np.ndarray, margin: float = 0.0) -> Bounds:
        """Min/max over training frames (rows), widened by ``margin`` of the range."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[0] == 0:
            raise ValueError(f"need a (frames, dims) array with at least one frame, got {values.shape}")
        if not np.all(np.isfinite(values)):
            raise ValueError("training values contain NaN or infinity")
        lo, hi = values.min(axis=0), values.max(axis=0)
        pad = (hi - lo) * margin
        return cls(lo - pad, hi + pad)

    def to_json(self) -> str:
        return json.dumps({"lo": self.lo.tolist(), "hi": self.hi.tolist()})

    @classmethod
    def from_json(cls, text: str) -> Bounds:
        try:
            obj = json.loads(text)
            return cls(np.array(obj["lo"], dtype=np.float64), np.array(obj["hi"], dtype=np.float64))
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a bounds JSON object: {exc}") from exc

    def canonical_bytes(self) -> bytes:
        """Bytes that identify these bounds; part of the codec's configuration tag."""
        return self.lo.astype("<f4").tobytes() + self.hi.astype("<f4").tobytes()


@dataclass
class QuantStats:
    values: int = 0
    clamped: int = 0
    clamped_per_dim: np.ndarray | None = field(default=None, repr=False)


def normalize_bits(bits: int | Sequence[int], dims: int) -> tuple[int, ...]:
    """One quantization depth per dimension, each in 4..10 bits."""
    out = (int(bits),) * dims if isinstance(bits, (int, np.integer)) else tuple(int(b) for b in bits)
    if len(out) != dims:
        raise ValueError(f"need one quantization depth per dimension ({dims}), got {len(out)}")
    bad = [b for b in out if not MIN_BITS <= b <= MAX_BITS]
    if bad:
        raise ValueError(f"quantization depth must be {MIN_BITS}..{MAX_BITS} bits, got {bad[0]}")
    return out


def equal_step_bits(bounds: Bounds, n_equal: int, max_bits: int = 8, min_bits: int = MIN_BITS) -> tuple[int, ...]:
    """Depths giving the first ``n_equal`` dimensions (nearly) one common step.

    The expression coefficients are coordinates along orthonormal landmark
    displacement directions, all in millimetres, so an error of one step costs
    the same landmark error whichever component it hits. Equal steps therefore
    minimise landmark error for the bits spent (reverse water-filling). The
    widest component gets ``max_bits``; narrow ones, which carry little beyond
    tracker jitter, get fewer. The remaining dimensions (angles, translation)
    keep ``max_bits``, as in the paper.
    """
    span = bounds.hi - bounds.lo
    step = max(float(span[:n_equal].max()), 1e-12) / ((1 << max_bits) - 1)
    need = np.ceil(np.log2(span[:n_equal] / step + 1.0))
    head = np.clip(need, min_bits, max_bits).astype(int).tolist()
    return tuple(head) + (max_bits,) * (bounds.dims - n_equal)


class Quantizer:
    """Maps float parameters to integers in ``[0, 2**bits[d] - 1]`` and back."""

    def __init__(self, bounds: Bounds, bits: int | Sequence[int] = 8) -> None:
        self.bounds = bounds
        self.bits = normalize_bits(bits, bounds.dims)
        #: the highest level of each dimension
        self.top = np.array([(1 << b) - 1 for b in self.bits], dtype=np.int64)
        span = bounds.hi - bounds.lo
        self._degenerate = span <= 0
        # A degenerate dimension (constant in training) always codes level 0.
        self._scale = np.where(self._degenerate, 0.0, self.top / np.where(span > 0, span, 1.0))
        self._step = span / self.top
        self.stats = QuantStats(clamped_per_dim=np.zeros(bounds.dims, dtype=np.int64))

    @property
    def dims(self) -> int:
        return self.bounds.dims

    def quantize(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (self.dims,):
            raise ValueError(f"expected {self.dims} values, got shape {values.shape}")
        if not np.all(np.isfinite(values)):
            bad = np.flatnonzero(~np.isfinite(values)).tolist()
            raise ValueError(f"parameter values are NaN or infinite in dimension(s) {bad}")
        scaled = np.rint((values - self.bounds.lo) * self._scale)
        over = (scaled < 0) | (scaled > self.top)
        # A value that rounds inside the range was not clamped, even if it is a hair outside.
        self.stats.values += values.size
        n_over = int(np.count_nonzero(over & ~self._degenerate))
        if n_over:
            self.stats.clamped += n_over
            self.stats.clamped_per_dim += over & ~self._degenerate
        return np.clip(scaled, 0, self.top).astype(np.int64)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        q = np.asarray(q)
        if q.shape != (self.dims,):
            raise ValueError(f"expected {self.dims} levels, got shape {q.shape}")
        return self.bounds.lo + q.astype(np.float64) * self._step

    @property
    def step(self) -> np.ndarray:
        """Quantization step per dimension: the worst-case error is half of it."""
        return self._step.copy()
