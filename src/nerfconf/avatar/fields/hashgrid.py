"""Blended multiresolution hash encoding (NeRFBlendShape on instant-NGP).

The avatar keeps K+1 hash tables: a neutral one and one per expression basis.
For a frame with expression coefficients ``e`` (K values, already clamped by
the caller) the tables are blended once, ``H = T_0 + sum_k e_k T_k``, and the
radiance field then queries ``H`` like an ordinary instant-NGP grid: per level
the 8 corners around a point, trilinearly interpolated, levels concatenated.

Convention: callers pass the K expression coefficients; the neutral weight 1 is
prepended internally (``BlendedHashGrid.weights``). Functions that take
``weights`` take all K+1 of them.

On CPU the work runs in the numba kernels of ``hashgrid_kernels`` (float32),
wrapped in autograd: gradients flow to the tables and to the expression
coefficients (``dL/de_k = <T_k, dL/dH>``), never to the positions, so ``x``
must not require grad there. On other devices (CUDA) the same maths runs as
pure-torch gathers (``reference_encode``, ``reference_blend``), which is also
the reference the kernels are tested against.

Inference: ``table = grid.blended_table(e)`` once per frame under
``torch.no_grad()``, then ``grid.encode(x, table)`` for every batch of samples.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
import torch

from nerfconf.avatar.fields import hashgrid_kernels as K
from nerfconf.types import DEFAULT_EXPRESSION_DIMS

INIT_SCALE = 1e-4  # instant-NGP initialises table entries uniformly in +-1e-4


@dataclass(frozen=True)
class HashGridConfig:
    """Shape of a blended hash grid.

    ``levels`` resolutions grow geometrically from ``min_resolution`` to
    ``max_resolution`` (instant-NGP: ``floor(N_min * b^l)``); each level has a
    table of ``2**log2_table`` rows of ``features`` floats, and there are
    ``n_tables`` = K+1 blended tables (neutral + one per expression basis).
    """

    levels: int = 12
    features: int = 2
    log2_table: int = 14
    min_resolution: int = 16
    max_resolution: int = 512
    n_tables: int = DEFAULT_EXPRESSION_DIMS + 1

    def __post_init__(self) -> None:
        if self.levels < 1:
            raise ValueError(f"levels must be >= 1, got {self.levels}")
        if self.features < 1:
            raise ValueError(f"features must be >= 1, got {self.features}")
        if not 1 <= self.log2_table <= 30:
            raise ValueError(f"log2_table must be in 1..30, got {self.log2_table}")
        if not 1 <= self.min_resolution <= self.max_resolution <= K.MAX_RESOLUTION:
            raise ValueError(
                f"need 1 <= min_resolution <= max_resolution <= {K.MAX_RESOLUTION}, "
                f"got {self.min_resolution}, {self.max_resolution}"
            )
        if self.n_tables < 1:
            raise ValueError(f"n_tables must be >= 1, got {self.n_tables}")

    @property
    def table_size(self) -> int:
        return 1 << self.log2_table

    @property
    def n_expression(self) -> int:
        return self.n_tables - 1

    @property
    def resolutions(self) -> tuple[int, ...]:
        if self.levels == 1:
            return (self.min_resolution,)
        growth = math.exp(
            (math.log(self.max_resolution) - math.log(self.min_resolution)) / (self.levels - 1)
        )
        # the epsilon keeps floor(16 * b^11) at 512 when b^11 rounds just below 32
        return tuple(
            min(self.max_resolution, math.floor(self.min_resolution * growth**lv + 1e-6))
            for lv in range(self.levels)
        )

    @property
    def output_dim(self) -> int:
        return self.levels * self.features


# ---------------------------------------------------------------------------
# pure-torch reference (also the fallback off CPU)

_CORNERS = ((0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0), (0, 0, 1), (1, 0, 1), (0, 1, 1), (1, 1, 1))


def _clamp_positions(x: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0).clamp(0.0, 1.0)


def reference_encode(
    x: torch.Tensor, table: torch.Tensor, resolutions: Sequence[int]
) -> torch.Tensor:
    """Hash-grid lookup with torch gathers: x (N, 3), table (L, T, F) -> (N, L*F).

    Same conventions as the kernels (see ``hashgrid_kernels``): NaN positions
    count as 0, others are clamped into [0, 1]; dense levels when (R+1)^3 <= T.
    Differentiable with respect to ``table`` (and, almost everywhere, ``x``).
    """
    n_levels, t_size, _ = table.shape
    if len(resolutions) != n_levels:
        raise ValueError("resolutions must have one entry per table level")
    x = _clamp_positions(x.to(table.dtype))
    corners = torch.tensor(_CORNERS, dtype=torch.int64, device=x.device)  # (8, 3)
    outs = []
    for lv, res in enumerate(resolutions):
        res = min(max(int(res), 1), K.MAX_RESOLUTION)
        p = x * float(res)
        cell = torch.floor(p).long().clamp(0, res - 1)  # (N, 3)
        frac = p - cell.to(p.dtype)
        c = cell[:, None, :] + corners[None]  # (N, 8, 3)
        # weights (1 - f) or f per axis, multiplied x * y * z as the kernels do
        sel = corners[None].bool()
        wa = torch.where(sel, frac[:, None, :], 1.0 - frac[:, None, :])  # (N, 8, 3)
        w = wa[..., 0] * wa[..., 1] * wa[..., 2]  # (N, 8)
        side = res + 1
        if side**3 <= t_size:
            rows = c[..., 0] + c[..., 1] * side + c[..., 2] * (side * side)
        else:
            rows = c[..., 0] ^ (c[..., 1] * K.PRIME_Y) ^ (c[..., 2] * K.PRIME_Z)
            rows = rows & (t_size - 1) if t_size & (t_size - 1) == 0 else rows % t_size
        vals = table[lv][rows]  # (N, 8, F)
        acc = w[..., 0, None] * vals[:, 0]
        for ci in range(1, 8):
            acc = acc + w[..., ci, None] * vals[:, ci]
        outs.append(acc)
    return torch.cat(outs, dim=1)


def reference_blend(tables: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_k weights[k] * tables[k]`` with torch: (K+1, L, T, F), (K+1,) -> (L, T, F)."""
    return torch.einsum("k,kltf->ltf", weights.to(tables.dtype), tables)


# ---------------------------------------------------------------------------
# numba-backed autograd functions (CPU)


def _np32(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).contiguous().numpy()


class _EncodeFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, table, resolutions):  # type: ignore[override]
        x_np = _np32(x)
        t_np = _np32(table)
        out = np.empty((x_np.shape[0], t_np.shape[0] * t_np.shape[2]), np.float32)
        K.encode_forward(x_np, t_np, resolutions, out)
        ctx.x_np = x_np
        ctx.resolutions = resolutions
        ctx.table_shape = t_np.shape
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        if ctx.needs_input_grad[0]:
            raise RuntimeError("the numba hash encoding has no gradient for positions")
        grad_table = None
        if ctx.needs_input_grad[1]:
            grad_table = np.zeros(ctx.table_shape, np.float32)
            K.encode_backward(
                ctx.x_np, _np32(grad_out), ctx.resolutions, grad_table, numba.get_num_threads()
            )
            grad_table = torch.from_numpy(grad_table)
        return None, grad_table, None


class GradBufferPool:
    """Reuses the large (K+1, L, T, F) table-gradient arrays across training steps.

    The blend gradient is 74 MB at the default size. glibc serves blocks above 32 MB
    with fresh mmap pages, and faulting them in costs 60-75 ms per step on the 2-core
    VM this was measured on, more than the step's compute. An array is handed out
    again only once nothing but the pool references it: ``torch.from_numpy`` tensors
    (``.grad``, views of it) hold a reference to the array until their storage dies,
    so a gradient still in use is never overwritten.
    """

    def __init__(self, max_arrays: int = 2) -> None:
        self._arrays: list[np.ndarray] = []
        self._max = max_arrays

    def empty(self, shape: tuple[int, ...]) -> np.ndarray:
        for arr in self._arrays:
            # references: the pool's list, this loop variable, getrefcount's argument
            if arr.shape == shape and sys.getrefcount(arr) <= 3:
                return arr
        arr = np.empty(shape, np.float32)
        if len(self._arrays) < self._max:
            self._arrays.append(arr)
        return arr


class _BlendFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tables, weights, pool):  # type: ignore[override]
        t_np = _np32(tables)
        w_np = _np32(weights)
        ctx.t_np = t_np
        ctx.w_np = w_np
        ctx.pool = pool
        return torch.from_numpy(K.blend(t_np, w_np))

    @staticmethod
    def backward(ctx, grad_blended):  # type: ignore[override]
        g = _np32(grad_blended)
        grad_tables = grad_weights = None
        if ctx.needs_input_grad[0]:
            shape = ctx.t_np.shape
            out = ctx.pool.empty(shape) if ctx.pool is not None else np.empty(shape, np.float32)
            K.blend_backward_into(g, ctx.w_np, out)  # overwrites every entry
            grad_tables = torch.from_numpy(out)
        if ctx.needs_input_grad[1]:
            grad_weights = torch.from_numpy(K.blend_weight_grad(ctx.t_np, g))
        return grad_tables, grad_weights, None


def _resolutions_array(resolutions: Sequence[int]) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(resolutions, dtype=np.int32))


def encode(x: torch.Tensor, table: torch.Tensor, resolutions: Sequence[int]) -> torch.Tensor:
    """Hash-grid lookup: x (N, 3) in [0, 1], table (L, T, F) -> features (N, L*F).

    CPU tensors go through the numba kernels (float32 result, gradient for the
    table only: ``x`` must not require grad); others through ``reference_encode``.
    """
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"x must have shape (N, 3), got {tuple(x.shape)}")
    if table.ndim != 3:
        raise ValueError(f"table must have shape (L, T, F), got {tuple(table.shape)}")
    if x.device.type != "cpu" or table.device.type != "cpu":
        return reference_encode(x, table, resolutions)
    if x.requires_grad and torch.is_grad_enabled():
        raise ValueError("the CPU hash encoding has no gradient for positions: pass x.detach()")
    return _EncodeFn.apply(x, table, _resolutions_array(resolutions))


def blend_tables(
    tables: torch.Tensor, weights: torch.Tensor, pool: GradBufferPool | None = None
) -> torch.Tensor:
    """``sum_k weights[k] * tables[k]``: (K+1, L, T, F), (K+1,) -> (L, T, F).

    Differentiable with respect to both; numba on CPU, einsum elsewhere.
    Tables with weight exactly 0 are not read on CPU. ``pool`` lends the memory of
    the tables' gradient (CPU only).
    """
    if tables.ndim != 4 or weights.shape != (tables.shape[0],):
        raise ValueError(
            f"need tables (K+1, L, T, F) and weights (K+1,), got {tuple(tables.shape)}, "
            f"{tuple(weights.shape)}"
        )
    if tables.device.type != "cpu" or weights.device.type != "cpu":
        return reference_blend(tables, weights)
    return _BlendFn.apply(tables, weights, pool)


class BlendedHashGrid(torch.nn.Module):
    """K+1 hash tables blended by expression coefficients, then queried as one grid.

    ``forward(x, expression)``: x (N, 3) in [0, 1], expression (K,) coefficients
    (the neutral weight 1 is prepended here) -> features (N, L*F).
    """

    def __init__(self, config: HashGridConfig | None = None, *, generator=None,
                 expression_scale: tuple[float, ...] | None = None) -> None:
        super().__init__()
        self.config = config or HashGridConfig()
        c = self.config
        # Raw face-model coefficients spread from 2 to 20 (mm along each basis vector). Blended as
        # they are, a table's Adam step moves the blend by up to 80x the neutral table's, and the
        # wide components learn per-frame detail that does not carry over to new frames.
        scale = torch.ones(c.n_tables - 1) if expression_scale is None else torch.tensor(expression_scale)
        self.register_buffer("inverse_scale", 1.0 / scale.float(), persistent=False)
        tables = torch.empty(c.n_tables, c.levels, c.table_size, c.features)
        tables.uniform_(-INIT_SCALE, INIT_SCALE, generator=generator)
        self.tables = torch.nn.Parameter(tables)
        self.resolutions = c.resolutions
        self._grad_pool = GradBufferPool()

    @property
    def output_dim(self) -> int:
        return self.config.output_dim

    def weights(self, expression: torch.Tensor) -> torch.Tensor:
        """The K+1 blend weights ``[1, e_1 / s_1, ..., e_K / s_K]`` for expression coefficients (K,)."""
        k = self.config.n_expression
        if expression.shape != (k,):
            raise ValueError(f"expected {k} expression coefficients, got {tuple(expression.shape)}")
        one = torch.ones(1, dtype=self.tables.dtype, device=self.tables.device)
        scaled = expression.to(self.tables.dtype) * self.inverse_scale.to(self.tables.device)
        return torch.cat([one, scaled])

    def blended_table(self, expression: torch.Tensor) -> torch.Tensor:
        """The frame's blended table (L, T, F); wrap in ``torch.no_grad()`` for inference."""
        return blend_tables(self.tables, self.weights(expression), self._grad_pool)

    def encode(self, x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Look ``x`` (N, 3) up in an already blended table (L, T, F) -> (N, L*F)."""
        return encode(x, table, self.resolutions)

    def forward(self, x: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        return self.encode(x, self.blended_table(expression))


def benchmark(
    n_points: int = 262144, threads: int = 2, repeats: int = 5, config: HashGridConfig | None = None
) -> dict[str, float]:
    """Kernel timings (median of ``repeats`` after a warm-up) on random data.

    Run as ``python -m nerfconf.avatar.fields.hashgrid``; the defaults are the avatar's
    grid (L = 12, F = 2, T = 2^14, K+1 = 47) and 2^18 samples on 2 threads.
    """
    config = config or HashGridConfig()
    numba.set_num_threads(threads)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    c = config
    res = _resolutions_array(c.resolutions)
    x = rng.random((n_points, 3), dtype=np.float32)
    tables = rng.uniform(-INIT_SCALE, INIT_SCALE, (c.n_tables, c.levels, c.table_size, c.features))
    tables = tables.astype(np.float32)
    w = np.concatenate([[1.0], rng.uniform(0.0, 1.0, c.n_expression)]).astype(np.float32)
    table = K.blend(tables, w)
    out = np.empty((n_points, c.output_dim), np.float32)
    grad_out = rng.standard_normal((n_points, c.output_dim)).astype(np.float32)
    grad_table = np.zeros_like(table)
    K.encode_backward(x, grad_out, res, grad_table, threads)
    grad_tables = np.empty_like(tables)
    m1, m2 = np.zeros_like(tables), np.zeros_like(tables)

    def median_s(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    grid = BlendedHashGrid(c)
    xt = torch.from_numpy(x)
    e = torch.from_numpy(w[1:].copy()).requires_grad_(True)
    up = torch.from_numpy(grad_out)

    def train_step() -> None:
        grid.tables.grad = e.grad = None
        (grid(xt, e) * up).sum().backward()

    fwd = median_s(lambda: K.encode_forward(x, table, res, out))
    bwd = median_s(lambda: K.encode_backward(x, grad_out, res, grad_table, threads))
    step = median_s(train_step)
    return {
        "forward_ms": 1e3 * fwd,
        "forward_Msamples_s": n_points / fwd / 1e6,
        "backward_ms": 1e3 * bwd,
        "forward_backward_Msamples_s": n_points / (fwd + bwd) / 1e6,
        "blend_ms": 1e3 * median_s(lambda: K.blend(tables, w)),
        "blend_backward_ms": 1e3 * median_s(lambda: K.blend_backward(grad_table, w, grad_tables)),
        "blend_backward_into_ms": 1e3
        * median_s(lambda: K.blend_backward_into(grad_table, w, grad_tables)),
        "blend_weight_grad_ms": 1e3 * median_s(lambda: K.blend_weight_grad(tables, grad_table)),
        "blend_adam_step_ms": 1e3 * median_s(lambda: K.blend_adam_step(
            tables, m1, m2, grad_table, w, 1e-3, 0.9, 0.99, 1e-15, 10.0, 1e-9)),
        "module_train_step_ms": 1e3 * step,
        "module_train_step_Msamples_s": n_points / step / 1e6,
    }


if __name__ == "__main__":
    for name, value in benchmark().items():
        print(f"{name:32s} {value:8.2f}")
