"""``nerfconf bench train``: training speed of the avatar on this machine."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numba
import torch

from nerfconf.avatar.fields.field import FieldConfig
from nerfconf.avatar.training.dataset import prepare
from nerfconf.avatar.training.enroll import EnrollConfig
from nerfconf.avatar.training.trainer import TrainConfig, Trainer


@dataclass(frozen=True)
class TrainBench:
    """``nerfconf bench train``: rates are medians over the timed repeats."""

    video: str
    resolution: int
    rays_per_batch: int
    samples_per_ray: int
    field: FieldConfig
    device: str
    bf16_mlp: bool
    #: {"torch": n, "numba": n}
    threads: dict[str, int]
    iterations_per_second: float
    samples_per_second: float
    #: CPU time, which other work on a shared machine disturbs less than wall-clock rates
    cpu_ms_per_iteration: float
    #: share of occupancy-grid cells occupied after the timed runs
    occupied_fraction: float
    repeats: int
    iterations_per_repeat: int
    warmup_iterations: int


def bench_train(video: Path, *, resolution: int = 256, iterations: int = 200, warmup: int = 300,
                frames: int = 200, repeats: int = 3, workdir: Path | None = None, device: str = "cpu",
                bf16_mlp: bool | None = None) -> TrainBench:
    """Iterations and field samples per second, after the occupancy grid has pruned empty space.

    The model is the one ``nerfconf enroll`` trains. The warm-up runs past the
    occupancy warm-up, so the figures are those of the bulk of a real run, not of
    its first seconds. Besides wall-clock rates it reports CPU seconds per
    iteration, which a machine shared with other work disturbs less.
    """
    model, data, _ = prepare(video, resolution=resolution, test_frames=20, max_frames=frames)
    k = model.n_expression
    field = FieldConfig(n_expression=k, log2_table=EnrollConfig().log2_table)
    cfg = TrainConfig(iterations=10**9, checkpoint_every=10**9, device=device, bf16_mlp=bf16_mlp)
    trainer = Trainer(data, field, cfg, (model.bounds_lo[:k], model.bounds_hi[:k]),
                      workdir or Path("/tmp/nerfconf-bench-train"))
    for _ in range(warmup):
        trainer.step()
    runs = []
    for _ in range(repeats):
        samples = 0
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(iterations):
            samples += trainer.step()["samples"]
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        runs.append((iterations / seconds, samples / seconds, cpu / iterations))
    return TrainBench(
        video=video.name,
        resolution=resolution,
        rays_per_batch=cfg.rays_per_batch,
        samples_per_ray=cfg.samples_per_ray,
        field=field,
        device=device,
        bf16_mlp=trainer.bf16,
        threads={"torch": torch.get_num_threads(), "numba": numba.get_num_threads()},
        iterations_per_second=statistics.median(r[0] for r in runs),
        samples_per_second=statistics.median(r[1] for r in runs),
        cpu_ms_per_iteration=1e3 * statistics.median(r[2] for r in runs),
        occupied_fraction=trainer.occupancy.fraction(),
        repeats=repeats,
        iterations_per_repeat=iterations,
        warmup_iterations=warmup,
    )
