"""Fitting the arithmetic coder's initial context counts from an enrollment track."""

from __future__ import annotations

import numpy as np

from nerfconf.codec.arith import COUNT_ONE
from nerfconf.codec.entropy import CTX_PER_DIM, ContextPriors, inter_bins

#: how many observations a fitted prior is worth. Enough to start a GOP near
#: the right probabilities, few enough that the live stream overrides it quickly.
DEFAULT_STRENGTH = 6.0


def fit_priors(levels: np.ndarray, gop_frames: int, bits: int, strength: float = DEFAULT_STRENGTH) -> ContextPriors:
    """Counts each context's bins over ``levels`` (frames x dims) coded GOP by GOP.

    Residuals are taken against the previous frame, as the coder sees them in
    ``prev`` mode and, with timely acknowledgements, in ``anchor`` mode.
    """
    levels = np.asarray(levels, dtype=np.int64)
    if levels.ndim != 2 or len(levels) < 2:
        raise ValueError(f"need at least two frames of levels, got shape {levels.shape}")
    dims = levels.shape[1]
    seen = np.zeros((dims * CTX_PER_DIM, 2))
    for start in range(0, len(levels), gop_frames):
        last: tuple[int, ...] = (0,) * dims
        for i in range(start + 1, min(start + gop_frames, len(levels))):
            residual = (levels[i] - levels[i - 1]).tolist()
            for ctx, bit in inter_bins(residual, last, bits):
                if ctx >= 0:
                    seen[ctx, bit] += 1
            last = tuple(residual)
    total = seen.sum(axis=1)
    p1 = (seen[:, 1] + 0.5) / (total + 1.0)
    # A context seen only a few times gets a prior worth only that many observations.
    weight = np.minimum(strength, total) * COUNT_ONE + COUNT_ONE
    c1 = np.clip(np.rint(weight * p1), 1, 1 << 16).astype(np.int64)
    c0 = np.clip(np.rint(weight * (1 - p1)), 1, 1 << 16).astype(np.int64)
    return ContextPriors(tuple(np.stack([c0, c1], axis=1).ravel().tolist()))
