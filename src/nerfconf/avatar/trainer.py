"""Training a blendshape field on prepared frames.

Each iteration takes one training frame, so its expression table is blended
once, and a batch of random pixels from it. Losses:

* photometric L1 (or L2: ``TrainConfig.photometric``) against the head on white;
* opacity L1 against the head mask, for the first part of training, so the
  field learns the silhouette before colour detail;
* L1 sparsity on the expression tables, so a basis only changes what it must.

Adam (lr 1e-3, betas 0.9/0.99) with MultiStepLR's schedule as in the paper;
the milestones sit at 50 %, 75 % and 90 % of the run, since a CPU budget buys a
fraction of the paper's 200 epochs. With a time budget (``max_minutes``) the
run's progress is whichever of iterations and training time is further along,
so the schedule (and the mask-loss period) completes however busy the machine is. Checkpoints are safetensors (weights and
optimizer moments) plus JSON, written atomically, so an interrupted run resumes.

Speed: the frame's tables are blended once per iteration into a leaf tensor,
the loss back-propagates to that (L, T, F) table only, and ``TableAdam``
updates the K+1 tables and their moments from it in one pass (the sparsity
term's gradient folded in). The maths is that of autograd through the blend
followed by torch's Adam; the (K+1, L, T, F) gradient is never formed.

Rays: a fraction of each batch is drawn inside the box around the frame's head
mask (widened by 1/16 of the frame), the rest anywhere, so that fewer rays are
spent on the white background, which the field learns early.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from nerfconf.avatar.dataset import AvatarData
from nerfconf.avatar.field import BlendshapeField, FieldConfig
from nerfconf.avatar.renderer import Camera, OccupancyGrid, render_rays
from nerfconf.avatar.table_adam import TableAdam


@dataclass(frozen=True)
class TrainConfig:
    iterations: int = 20000
    rays_per_batch: int = 2048
    samples_per_ray: int = 48
    lr: float = 1e-3
    #: fraction of the run during which the mask loss applies
    mask_loss_until: float = 0.3
    mask_weight: float = 0.1
    sparsity_weight: float = 1e-5
    occupancy_every: int = 16
    occupancy_warmup: int = 256
    checkpoint_every: int = 500
    #: training-time budget in minutes, over all resumed runs together
    max_minutes: float | None = None
    seed: int = 0
    #: fraction of each batch's rays drawn inside the box around the head mask
    head_ray_fraction: float = 0.0
    #: Gaussian noise on training expressions, in units of each coefficient's spread
    expression_noise: float = 0.0
    #: "l1" or "l2". PSNR scores the squared error, and where a pixel is unpredictable (the
    #: silhouette under tracker pose error) L2's mean beats L1's median on it.
    photometric: str = "l1"
    #: torch device ("cpu", "cuda", ...); off CPU the hash encoding runs as torch gathers
    device: str = "cpu"
    #: run the MLPs in bfloat16 (autocast; the hash tables, their gradients and compositing stay
    #: float32): None picks it where the hardware computes bfloat16 natively
    bf16_mlp: bool | None = None

    def __post_init__(self) -> None:
        if self.photometric not in PHOTOMETRIC_LOSSES:
            raise ValueError(f"photometric loss must be one of {PHOTOMETRIC_LOSSES}, got {self.photometric!r}")


PHOTOMETRIC_LOSSES = ("l1", "l2")

#: learning rate drops by LR_GAMMA at these fractions of the run (MultiStepLR)
LR_MILESTONES = (0.5, 0.75, 0.9)
LR_GAMMA = 0.33


@dataclass
class TrainState:
    iteration: int = 0
    seconds: float = 0.0
    last_psnr: float = 0.0


def clamp_expression(data: AvatarData, lo: np.ndarray, hi: np.ndarray, i: int) -> torch.Tensor:
    return torch.from_numpy(np.clip(data.expressions[i], lo, hi).astype(np.float32))


def camera_of(data: AvatarData, i: int) -> Camera:
    rot, centre = data.camera_to_head(i)
    return Camera(rot, centre, data.focal, data.resolution)


class Trainer:
    def __init__(
        self,
        data: AvatarData,
        field_config: FieldConfig,
        config: TrainConfig,
        bounds: tuple[np.ndarray, np.ndarray],
        workdir: Path,
    ) -> None:
        self.data = data
        self.config = config
        self.workdir = Path(workdir)
        self.lo, self.hi = bounds
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.device = torch.device(config.device)
        self.field = BlendshapeField(field_config).to(self.device)
        self.occupancy = OccupancyGrid(self.field)
        tables = self.field.encoding.tables
        # The tables get their own fused Adam (see the module notes); the MLPs torch's.
        self.table_adam = TableAdam(tables, betas=(0.9, 0.99), eps=1e-15, sparsity=config.sparsity_weight)
        self.optimizer = torch.optim.Adam([p for p in self.field.parameters() if p is not tables], lr=config.lr,
                                          betas=(0.9, 0.99), eps=1e-15, foreach=True)
        self.state = TrainState()
        self.train_frames = data.train_indices
        if len(self.train_frames) == 0:
            raise ValueError("no training frames with a face")
        self.head_boxes = head_boxes(data.alphas, margin=data.resolution // 16)
        self.expression_spread = data.expressions[self.train_frames].std(axis=0).astype(np.float32)
        self.bf16 = native_bf16(self.device) if config.bf16_mlp is None else config.bf16_mlp

    def sample_pixels(self, i: int) -> np.ndarray:
        """(M, 2) pixel (x, y) for a batch on frame ``i``, part of them inside its head box."""
        n = self.config.rays_per_batch
        n_head = round(self.config.head_ray_fraction * n)
        x0, y0, x1, y1 = self.head_boxes[i]
        head = np.stack([self.rng.integers(x0, x1, n_head), self.rng.integers(y0, y1, n_head)], axis=1)
        anywhere = self.rng.integers(0, self.data.resolution, size=(n - n_head, 2))
        return np.concatenate([head, anywhere])

    def progress(self) -> float:
        """How far the run is, 0 to 1: iterations or training time, whichever is further along."""
        cfg = self.config
        done = self.state.iteration / cfg.iterations
        if cfg.max_minutes:
            done = max(done, self.state.seconds / (60 * cfg.max_minutes))
        return min(done, 1.0)

    def learning_rate(self) -> float:
        passed = sum(self.progress() >= m for m in LR_MILESTONES)
        return self.config.lr * LR_GAMMA**passed

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def training_expression(self, i: int) -> torch.Tensor:
        e = self.data.expressions[i]
        if self.config.expression_noise:
            noise = self.rng.standard_normal(e.shape).astype(np.float32)
            e = e + self.config.expression_noise * self.expression_spread * noise
        return torch.from_numpy(np.clip(e, self.lo, self.hi).astype(np.float32)).to(self.device)

    # -- one step ------------------------------------------------------------------------

    def step(self) -> dict[str, float]:
        cfg, data, dev = self.config, self.data, self.device
        i = int(self.rng.choice(self.train_frames))
        pixels = self.sample_pixels(i)
        origins, dirs = camera_of(data, i).rays(pixels)
        origins, dirs = origins.to(dev), dirs.to(dev)
        target = torch.from_numpy(data.images[i][pixels[:, 1], pixels[:, 0]].astype(np.float32) / 255.0).to(dev)
        mask = torch.from_numpy(data.alphas[i][pixels[:, 1], pixels[:, 0]].astype(np.float32) / 255.0).to(dev)
        expression = self.training_expression(i)
        encoding = self.field.encoding
        with torch.no_grad():
            weights = encoding.weights(expression)
            table = encoding.blended_table(expression)
        table.requires_grad_(True)
        use_occ = self.state.iteration >= cfg.occupancy_warmup
        with self.autocast():
            out = render_rays(self.field, origins, dirs, expression, samples=cfg.samples_per_ray, perturb=True,
                              occupancy=self.occupancy if use_occ else None, table=table)
        residual = out.rgb - target
        loss = residual.square().mean() if cfg.photometric == "l2" else residual.abs().mean()
        if self.progress() < cfg.mask_loss_until:
            loss = loss + cfg.mask_weight * (out.opacity - mask).abs().mean()
        self.optimizer.zero_grad(set_to_none=True)
        if loss.requires_grad:  # not when every sample of the batch was culled
            loss.backward()
            lr = self.learning_rate()
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.optimizer.step()
            self.table_adam.step(table.grad, weights, lr)
        self.state.iteration += 1
        if self.state.iteration % cfg.occupancy_every == 0:
            j = int(self.rng.choice(self.train_frames))
            with self.autocast():
                self.occupancy.update(clamp_expression(data, self.lo, self.hi, j).to(dev))
        mse = float(((out.rgb.detach() - target) ** 2).mean())
        self.state.last_psnr = -10 * math.log10(max(mse, 1e-10))
        # the sparsity term is applied inside TableAdam and not part of the reported loss
        return {"loss": float(loss.detach()), "psnr": self.state.last_psnr, "samples": out.evaluated}

    # -- the run ---------------------------------------------------------------------------

    def train(self, progress: bool = True, on_step: Callable[[dict], None] | None = None) -> TrainState:
        cfg = self.config
        bar = None
        if progress:
            from tqdm import tqdm  # noqa: PLC0415

            # The bar counts the run's progress, not iterations: with a time budget the run ends on the
            # clock, and a bar over --iters would show a wrong total and ETA.
            bar = tqdm(total=100.0, initial=100 * self.progress(), desc="training",
                       bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]")
        try:
            while self.progress() < 1.0:
                t0 = time.perf_counter()
                stats = self.step()
                self.state.seconds += time.perf_counter() - t0
                if bar is not None:
                    bar.update(100 * self.progress() - bar.n)
                    bar.set_postfix(it=self.state.iteration, psnr=f"{stats['psnr']:.2f}",
                                    occ=f"{self.occupancy.fraction():.2f}")
                if on_step is not None:
                    on_step(stats)
                if self.state.iteration % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
        finally:
            if bar is not None:
                bar.close()
            self.save_checkpoint()
        return self.state

    # -- checkpoints -------------------------------------------------------------------------

    def _adam_states(self):
        """(exp_avg, exp_avg_sq, step) per parameter of the field, in ``parameters()`` order."""
        for p in self.field.parameters():
            if p is self.table_adam.tables:
                ta = self.table_adam
                yield ta.exp_avg, ta.exp_avg_sq, ta.steps
            elif p in self.optimizer.state:
                st = self.optimizer.state[p]
                yield st["exp_avg"], st["exp_avg_sq"], float(st["step"])
            else:
                yield None, None, 0

    def save_checkpoint(self) -> None:
        from safetensors.torch import save_file  # noqa: PLC0415

        self.workdir.mkdir(parents=True, exist_ok=True)
        tensors = {f"field.{k}": v.detach().contiguous() for k, v in self.field.state_dict().items()}
        if self.occupancy.density is not None:
            tensors["occupancy.density"] = self.occupancy.density.contiguous()
        # Moments are keyed by the parameter's index in field.parameters() (0 is the tables).
        steps = {}
        for pid, (exp_avg, exp_avg_sq, step) in enumerate(self._adam_states()):
            if step:
                tensors[f"adam.{pid}.exp_avg"] = exp_avg.detach().contiguous()
                tensors[f"adam.{pid}.exp_avg_sq"] = exp_avg_sq.detach().contiguous()
                steps[str(pid)] = float(step)
        meta = {"state": asdict(self.state), "adam_steps": steps,
                "train_config": asdict(self.config), "field_config": self.field.config.to_dict()}
        tensors = {k: v.cpu() for k, v in tensors.items()}
        tmp = self.workdir / "checkpoint.safetensors.tmp"
        save_file(tensors, str(tmp))
        os.replace(tmp, self.workdir / "checkpoint.safetensors")
        (self.workdir / "checkpoint.json.tmp").write_text(json.dumps(meta, default=_jsonable))
        os.replace(self.workdir / "checkpoint.json.tmp", self.workdir / "checkpoint.json")

    def load_checkpoint(self) -> bool:
        """Resumes from the work directory's checkpoint; False when there is none."""
        from safetensors.torch import load_file  # noqa: PLC0415

        path = self.workdir / "checkpoint.safetensors"
        if not path.is_file():
            return False
        meta = json.loads((self.workdir / "checkpoint.json").read_text())
        if FieldConfig.from_dict(meta["field_config"]) != self.field.config:
            raise ValueError(f"{path} was made with another model configuration; remove it to start over")
        tensors = load_file(str(path), device=str(self.device))
        self.field.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("field.")})
        self.occupancy.density = tensors.get("occupancy.density")
        params = list(self.field.parameters())
        for pid, step in meta["adam_steps"].items():
            p = params[int(pid)]
            exp_avg, exp_avg_sq = tensors[f"adam.{pid}.exp_avg"], tensors[f"adam.{pid}.exp_avg_sq"]
            if p is self.table_adam.tables:
                self.table_adam.exp_avg.copy_(exp_avg)
                self.table_adam.exp_avg_sq.copy_(exp_avg_sq)
                self.table_adam.steps = int(step)
            else:
                self.optimizer.state[p] = {"step": torch.tensor(step), "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}
        self.state = TrainState(**meta["state"])
        # The schedule is a function of the progress: restore it rather than serialise it.
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        return True


def native_bf16(device: torch.device) -> bool:
    """Whether matrix products in bfloat16 run natively (and so faster than float32) on ``device``.

    On this project's CPU (AVX512-BF16) the MLPs' forward and backward take a third of
    the float32 time; instant-NGP likewise runs its MLPs in half precision.
    """
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return False


def head_boxes(alphas: np.ndarray, margin: int) -> np.ndarray:
    """Per frame (x0, y0, x1, y1), end-exclusive: the box around the mask, widened by ``margin``.

    A frame without mask gets the whole image.
    """
    n, r = alphas.shape[:2]
    boxes = np.tile(np.array([0, 0, r, r], np.int64), (n, 1))
    for start in range(0, n, 256):  # in slices: a boolean copy of every frame at once is large
        m = alphas[start : start + 256] > 0
        rows, cols = m.any(axis=2), m.any(axis=1)
        for j in np.flatnonzero(rows.any(axis=1)):
            ys, xs = np.flatnonzero(rows[j]), np.flatnonzero(cols[j])
            boxes[start + j] = (max(xs[0] - margin, 0), max(ys[0] - margin, 0),
                                min(xs[-1] + 1 + margin, r), min(ys[-1] + 1 + margin, r))
    return boxes


def _jsonable(obj):
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
