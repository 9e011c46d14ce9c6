"""Training a blendshape field on prepared frames.

Each iteration takes one training frame, so its expression table is blended
once, and a batch of random pixels from it. Losses:

* photometric L1 against the head on white;
* opacity L1 against the head mask, for the first part of training, so the
  field learns the silhouette before colour detail;
* L1 sparsity on the expression tables, so a basis only changes what it must.

Adam (lr 1e-3, betas 0.9/0.99) with MultiStepLR as in the paper; the
milestones sit at 50 %, 75 % and 90 % of the run, since a CPU budget buys a
fraction of the paper's 200 epochs. Checkpoints are safetensors (weights and
optimizer moments) plus JSON, written atomically, so an interrupted run resumes.
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
    max_minutes: float | None = None
    seed: int = 0


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
        self.field = BlendshapeField(field_config)
        self.occupancy = OccupancyGrid(self.field)
        self.optimizer = torch.optim.Adam(self.field.parameters(), lr=config.lr, betas=(0.9, 0.99), eps=1e-15)
        milestones = [int(config.iterations * f) for f in (0.5, 0.75, 0.9)]
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones, gamma=0.33)
        self.state = TrainState()
        self.train_frames = data.train_indices
        if len(self.train_frames) == 0:
            raise ValueError("no training frames with a face")

    # -- one step ------------------------------------------------------------------------

    def step(self) -> dict[str, float]:
        cfg, data = self.config, self.data
        i = int(self.rng.choice(self.train_frames))
        r = data.resolution
        pixels = self.rng.integers(0, r, size=(cfg.rays_per_batch, 2))
        origins, dirs = camera_of(data, i).rays(pixels)
        target = torch.from_numpy(data.images[i][pixels[:, 1], pixels[:, 0]].astype(np.float32) / 255.0)
        mask = torch.from_numpy(data.alphas[i][pixels[:, 1], pixels[:, 0]].astype(np.float32) / 255.0)
        expression = clamp_expression(data, self.lo, self.hi, i)
        use_occ = self.state.iteration >= cfg.occupancy_warmup
        out = render_rays(self.field, origins, dirs, expression, samples=cfg.samples_per_ray, perturb=True,
                          occupancy=self.occupancy if use_occ else None)
        loss = (out.rgb - target).abs().mean()
        if self.state.iteration < cfg.mask_loss_until * cfg.iterations:
            loss = loss + cfg.mask_weight * (out.opacity - mask).abs().mean()
        if cfg.sparsity_weight:
            loss = loss + cfg.sparsity_weight * self.field.encoding.tables[1:].abs().mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.state.iteration += 1
        if self.state.iteration % cfg.occupancy_every == 0:
            j = int(self.rng.choice(self.train_frames))
            self.occupancy.update(clamp_expression(data, self.lo, self.hi, j))
        mse = float(((out.rgb.detach() - target) ** 2).mean())
        self.state.last_psnr = -10 * math.log10(max(mse, 1e-10))
        return {"loss": float(loss.detach()), "psnr": self.state.last_psnr, "samples": out.evaluated}

    # -- the run ---------------------------------------------------------------------------

    def train(self, progress: bool = True, on_step: Callable[[dict], None] | None = None) -> TrainState:
        cfg = self.config
        deadline = time.monotonic() + cfg.max_minutes * 60 if cfg.max_minutes else None
        bar = None
        if progress:
            from tqdm import tqdm  # noqa: PLC0415

            bar = tqdm(total=cfg.iterations, initial=self.state.iteration, unit="it", desc="training")
        try:
            while self.state.iteration < cfg.iterations:
                if deadline is not None and time.monotonic() > deadline:
                    break
                t0 = time.perf_counter()
                stats = self.step()
                self.state.seconds += time.perf_counter() - t0
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(psnr=f"{stats['psnr']:.2f}", occ=f"{self.occupancy.fraction():.2f}")
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

    def save_checkpoint(self) -> None:
        from safetensors.torch import save_file  # noqa: PLC0415

        self.workdir.mkdir(parents=True, exist_ok=True)
        tensors = {f"field.{k}": v.detach().contiguous() for k, v in self.field.state_dict().items()}
        if self.occupancy.density is not None:
            tensors["occupancy.density"] = self.occupancy.density.contiguous()
        opt = self.optimizer.state_dict()
        for pid, st in opt["state"].items():
            for name in ("exp_avg", "exp_avg_sq"):
                tensors[f"adam.{pid}.{name}"] = st[name].contiguous()
        steps = {str(pid): float(st["step"]) for pid, st in opt["state"].items()}
        meta = {"state": asdict(self.state), "adam_steps": steps,
                "train_config": asdict(self.config), "field_config": self.field.config.to_dict()}
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
        if meta["field_config"] != json.loads(json.dumps(self.field.config.to_dict())):
            raise ValueError(f"{path} was made with another model configuration; remove it to start over")
        tensors = load_file(str(path))
        self.field.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("field.")})
        self.occupancy.density = tensors.get("occupancy.density")
        params = list(self.field.parameters())
        for pid, step in meta["adam_steps"].items():
            p = params[int(pid)]
            self.optimizer.state[p] = {
                "step": torch.tensor(step),
                "exp_avg": tensors[f"adam.{pid}.exp_avg"],
                "exp_avg_sq": tensors[f"adam.{pid}.exp_avg_sq"],
            }
        self.state = TrainState(**meta["state"])
        # The schedule is a function of the iteration: restore it rather than serialise it.
        passed = sum(self.state.iteration >= m for m in self.scheduler.milestones)
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr * self.scheduler.gamma**passed
        self.scheduler.last_epoch = self.state.iteration
        return True


def _jsonable(obj):
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
