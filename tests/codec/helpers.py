"""Shared builders for codec tests."""

from __future__ import annotations

import numpy as np

from nerfconf.codec.config import CodecConfig, Reference
from nerfconf.codec.entropy import CoderId
from nerfconf.codec.priors import fit_priors
from nerfconf.codec.quantize import Bounds
from nerfconf.types import ParamLayout

LAYOUT = ParamLayout(n_expression=6)


def config(
    coder: CoderId = CoderId.ARITHMETIC,
    reference: Reference = Reference.PREV,
    gop_frames: int = 20,
    bits: int = 8,
    layout: ParamLayout = LAYOUT,
    fitted: bool = False,
) -> CodecConfig:
    """A codec configuration; ``fitted`` gives the arithmetic coder priors fitted on a smooth track."""
    bounds = Bounds(np.full(layout.dims, -1.0), np.full(layout.dims, 1.0))
    priors = fit_priors(smooth_levels(200, layout.dims, bits, seed=99), gop_frames, bits) if fitted else None
    return CodecConfig(
        layout, bounds, bits=bits, coder=coder, reference=reference, gop_frames=gop_frames, priors=priors
    )


def smooth_levels(frames: int, dims: int, bits: int | tuple[int, ...] = 8, seed: int = 0) -> np.ndarray:
    """Levels that move with momentum around mid-range, like smoothed face parameters."""
    rng = np.random.default_rng(seed)
    top = (1 << np.broadcast_to(np.asarray(bits), (dims,))) - 1
    x = np.zeros((frames, dims))
    v = np.zeros(dims)
    for t in range(1, frames):
        v = 0.8 * v + rng.normal(0, 4.0, dims)
        x[t] = 0.9 * x[t - 1] + v
    return np.clip(np.rint(x * (top / 255) + top // 2), 0, top).astype(np.int64)
