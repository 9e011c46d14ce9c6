"""Shared builders for codec tests."""

from __future__ import annotations

import numpy as np

from nerfconf.codec.config import CodecConfig, Reference
from nerfconf.codec.entropy import CoderId
from nerfconf.codec.quantize import Bounds
from nerfconf.types import ParamLayout

LAYOUT = ParamLayout(n_expression=6)


def config(
    coder: CoderId = CoderId.ARITHMETIC,
    reference: Reference = Reference.PREV,
    gop_frames: int = 20,
    bits: int = 8,
    layout: ParamLayout = LAYOUT,
) -> CodecConfig:
    bounds = Bounds(np.full(layout.dims, -1.0), np.full(layout.dims, 1.0))
    return CodecConfig(layout, bounds, bits=bits, coder=coder, reference=reference, gop_frames=gop_frames)


def smooth_levels(frames: int, dims: int, bits: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    top = (1 << bits) - 1
    walk = np.cumsum(rng.integers(-3, 4, size=(frames, dims)), axis=0) + top // 2
    return np.clip(walk, 0, top)
