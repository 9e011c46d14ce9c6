"""Fitting the arithmetic coder's starting model from an enrollment track."""

from __future__ import annotations

import numpy as np

from nerfconf.codec.arith import COUNT_ONE
from nerfconf.codec.context_coder import N_CONTEXTS, ContextPriors, inter_bins
from nerfconf.codec.quantize import normalize_bits

#: how many observations a fitted context prior is worth. Enough to start a GOP
#: near the right probabilities, few enough that the live stream overrides it.
DEFAULT_STRENGTH = 12.0


def fit_predictor(levels: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Least-squares momentum and pull-back weights per dimension (in 1/256), and centres.

    Models the change ``x[t] - x[t-1]`` as ``a (x[t-1] - x[t-2]) + b (c - x[t-1])``.
    """
    x = levels.astype(np.float64)
    centre = np.clip(np.rint(x.mean(axis=0)), 0, None)
    momentum, pullback = [], []
    for d in range(x.shape[1]):
        if len(x) < 4:
            a = b = 0.0
        else:
            feats = np.stack([x[1:-1, d] - x[:-2, d], centre[d] - x[1:-1, d]], axis=1)
            target = x[2:, d] - x[1:-1, d]
            (a, b), *_ = np.linalg.lstsq(feats, target, rcond=None)
        momentum.append(int(np.clip(np.rint(a * 256), -256, 256)))
        pullback.append(int(np.clip(np.rint(b * 256), -256, 256)))
    return tuple(momentum), tuple(pullback), tuple(int(c) for c in centre)


def fit_priors(levels: np.ndarray, gop_frames: int, bits: int | tuple[int, ...], strength: float = DEFAULT_STRENGTH) -> ContextPriors:
    """Fits the predictor, then runs the coder's model over ``levels`` GOP by GOP and counts.

    Residuals are taken against the previous frame, as the coder sees them in
    ``prev`` mode and, with timely acknowledgements, in ``anchor`` mode.
    """
    levels = np.asarray(levels, dtype=np.int64)
    if levels.ndim != 2 or len(levels) < 2:
        raise ValueError(f"need at least two frames of levels, got shape {levels.shape}")
    dims = levels.shape[1]
    bits = normalize_bits(bits, dims)
    momentum, pullback, centre = fit_predictor(levels)
    uniform = ContextPriors.uniform(dims)
    model = ContextPriors(uniform.counts, uniform.scales, momentum, pullback, centre)

    def walk(model: ContextPriors, on_frame) -> None:
        rows = levels.tolist()
        for start in range(0, len(rows), gop_frames):
            state = model.initial_state()
            for i in range(start + 1, min(start + gop_frames, len(rows))):
                bins, state = inter_bins(model, rows[i], tuple(rows[i - 1]), state, bits)
                on_frame(bins, state)

    # First pass: each dimension's mean |residual| after prediction is its starting scale.
    sums = np.zeros(dims)
    frames = [0]

    def add_residuals(bins, state) -> None:
        sums[:] += np.abs(state.last_residual)
        frames[0] += 1

    walk(model, add_residuals)
    scales = tuple(int(s) for s in np.clip(np.rint(sums / max(1, frames[0]) * 16), 0, 1 << 16))
    model = ContextPriors(model.counts, scales, momentum, pullback, centre)

    # Second pass: how often each context sees each bit.
    seen = np.zeros((N_CONTEXTS, 2))

    def count(bins, state) -> None:
        for ctx, bit in bins:
            if ctx >= 0:
                seen[ctx, bit] += 1

    walk(model, count)
    total = seen.sum(axis=1)
    p1 = (seen[:, 1] + 0.5) / (total + 1.0)
    # A context seen only a few times gets a prior worth only that many observations.
    weight = np.minimum(strength, total) * COUNT_ONE + COUNT_ONE
    c1 = np.clip(np.rint(weight * p1), 1, 1 << 16).astype(np.int64)
    c0 = np.clip(np.rint(weight * (1 - p1)), 1, 1 << 16).astype(np.int64)
    counts = tuple(np.stack([c0, c1], axis=1).ravel().tolist())
    return ContextPriors(counts, scales, momentum, pullback, centre)
