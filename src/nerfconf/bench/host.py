"""How fast this host's cores multiply matrices: the yardstick every speed figure is quoted against.

Hosts differ fivefold (10 against 60 GMAC/s on one core, both 2-core AVX2 VMs), so a
renderer's milliseconds say little alone. ``sgemm_gmacs`` times one core's single-precision
matrix product on the renderer's own shapes (a chunk of 2048 samples through a 64-wide
layer), with BLAS held to one thread as the renderer runs it: a multi-threaded BLAS on
shapes this small measured 1.5 GMAC/s here. A frame's cost in GMAC-equivalents is then
its milliseconds times that rate times the threads it rendered with, which compares
across hosts.
"""

from __future__ import annotations

import time

import numpy as np

#: the MLP chunk the renderer multiplies (``mlp_kernels``): samples x hidden @ hidden x hidden
SHAPE = (2048, 64, 64)


def sgemm_gmacs(shape: tuple[int, int, int] = SHAPE, *, seconds: float = 0.3, runs: int = 5) -> float:
    """Median GMAC/s of one core's ``(m, k) @ (k, n)`` float32 product over ``runs`` timed runs."""
    from threadpoolctl import threadpool_limits  # noqa: PLC0415

    m, k, n = shape
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    out = np.empty((m, n), np.float32)
    with threadpool_limits(1):
        np.matmul(a, b, out=out)
        t0, reps = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds / runs:  # size a run to about seconds / runs
            np.matmul(a, b, out=out)
            reps += 1
        rates = []
        for _ in range(runs):
            t = time.perf_counter()
            for _ in range(reps):
                np.matmul(a, b, out=out)
            rates.append(m * k * n * reps / (time.perf_counter() - t) / 1e9)
    return float(np.median(rates))


def gmac_equivalents(ms: float, gmacs_per_core: float, threads: int) -> float:
    """A cost in milliseconds on this host as GMAC-equivalents: comparable across hosts."""
    return ms * 1e-3 * gmacs_per_core * threads
