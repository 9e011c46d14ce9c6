"""Training a blendshape field on prepared frames.

Each iteration takes one training frame, so its expression table is blended
once, and a batch of random pixels from it. Losses:

* photometric L1 (or L2: ``TrainConfig.photometric``) against the head on white;
* opacity L1 against the head mask, for the first part of training, so the
  field learns the silhouette before colour detail;
* L1 sparsity on the expression tables, so a basis only changes what it must;
* optionally Mip-NeRF 360's distortion loss (``distortion_weight``), which gathers each
  ray's weight into one short interval: a surface rather than a fog, which the fast
  renderer's early termination and empty-space skipping pay off on.

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

Poses: at the fractions of the run in ``AlignConfig.at`` every training frame's pose
is refitted through the field as it stands (``avatar.align``), and training goes on
from the corrected poses. The passes count toward the time budget.

Held-out PSNR: every ``heldout_every`` iterations a few held-out frames are rendered
(the receiver's renderer, the tracker's poses) and scored, for the progress bar and
the bundle's record only; nothing in training looks at them.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from dataclasses import field as dataclasses_field
from pathlib import Path

import numpy as np
import torch

from nerfconf.avatar.bundle import AvatarBundle
from nerfconf.avatar.camera import Camera
from nerfconf.avatar.fields.field import BlendshapeField, FieldConfig
from nerfconf.avatar.rendering.renderer import OccupancyGrid, distortion, render_rays
from nerfconf.avatar.training.align import AlignConfig, TrainingPoses, align_pass
from nerfconf.avatar.training.dataset import AvatarData
from nerfconf.avatar.training.table_adam import TableAdam
from nerfconf.face.model import FaceModel


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
    #: weight of the distortion loss (``renderer.distortion``; 0: off)
    distortion_weight: float = 0.0
    #: torch device ("cpu", "cuda", ...); off CPU the hash encoding runs as torch gathers
    device: str = "cpu"
    #: run the MLPs in bfloat16 (autocast; the hash tables, their gradients and compositing stay
    #: float32): None picks it where the hardware computes bfloat16 natively
    bf16_mlp: bool | None = None
    #: per-frame pose corrections of the training frames (``avatar.align``); needs the face model
    alignment: AlignConfig = AlignConfig.off()
    #: iterations between held-out PSNR readings (0: none); needs the face model
    heldout_every: int = 1000
    #: held-out frames scored at each reading, evenly spaced over the held-out part
    heldout_frames: int = 8

    def __post_init__(self) -> None:
        if self.photometric not in PHOTOMETRIC_LOSSES:
            raise ValueError(f"photometric loss must be one of {PHOTOMETRIC_LOSSES}, got {self.photometric!r}")


PHOTOMETRIC_LOSSES = ("l1", "l2")

#: the occupancy grid culls samples only once at least this fraction of its cells is occupied
MIN_OCCUPIED = 0.01
#: learning rate drops by LR_GAMMA at these fractions of the run (MultiStepLR)
LR_MILESTONES = (0.5, 0.75, 0.9)
LR_GAMMA = 0.33


@dataclass
class TrainState:
    iteration: int = 0
    seconds: float = 0.0
    last_psnr: float = 0.0
    #: alignment passes done, and what each found
    alignment_passes: int = 0
    alignment: list = dataclasses_field(default_factory=list)
    #: (iteration, PSNR) of each held-out reading
    heldout_psnr: list = dataclasses_field(default_factory=list)


def clamp_expression(data: AvatarData, lo: np.ndarray, hi: np.ndarray, i: int) -> torch.Tensor:
    return torch.from_numpy(np.clip(data.expressions[i], lo, hi).astype(np.float32))


def camera_of(data: AvatarData, i: int, poses: TrainingPoses | None = None) -> Camera:
    """Frame ``i``'s camera, from its tracked pose or from ``poses`` (corrected)."""
    pose = data.head_pose(i) if poses is None else poses.head_pose(i)
    return Camera.of_pose(pose, data.focal, data.resolution)


class Trainer:
    def __init__(
        self,
        data: AvatarData,
        field_config: FieldConfig,
        config: TrainConfig,
        bounds: tuple[np.ndarray, np.ndarray],
        workdir: Path,
        face_model: FaceModel | None = None,
    ) -> None:
        self.data = data
        self.face_model = face_model
        if face_model is None and config.alignment.at:
            raise ValueError("aligning the training poses renders the avatar, which needs the face model")
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
        self.poses = TrainingPoses.of(data)
        self._codec = None  # the snapshot's codec section, fitted on first use (only the renderer reads it)
        test = data.test_indices
        self.heldout = test[np.linspace(0, len(test) - 1, min(config.heldout_frames, len(test))).astype(int)] \
            if len(test) and config.heldout_every and face_model is not None else np.zeros(0, np.int64)

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
        origins, dirs = camera_of(data, i, self.poses).rays(pixels)
        origins, dirs = origins.to(dev), dirs.to(dev)
        target = torch.from_numpy(data.images[i][pixels[:, 1], pixels[:, 0]].astype(np.float32) / 255.0).to(dev)
        mask = torch.from_numpy(data.alphas[i][pixels[:, 1], pixels[:, 0]].astype(np.float32) / 255.0).to(dev)
        expression = self.training_expression(i)
        encoding = self.field.encoding
        with torch.no_grad():
            weights = encoding.weights(expression)
            table = encoding.blended_table(expression)
        table.requires_grad_(True)
        # A grid that marks (nearly) every cell empty would keep the field from ever growing there:
        # while the field is still that faint, every sample is evaluated.
        use_occ = self.state.iteration >= cfg.occupancy_warmup and self.occupancy.fraction() >= MIN_OCCUPIED
        with self.autocast():
            out = render_rays(self.field, origins, dirs, expression, samples=cfg.samples_per_ray, perturb=True,
                              occupancy=self.occupancy if use_occ else None, table=table)
        residual = out.rgb - target
        loss = residual.square().mean() if cfg.photometric == "l2" else residual.abs().mean()
        if self.progress() < cfg.mask_loss_until:
            loss = loss + cfg.mask_weight * (out.opacity - mask).abs().mean()
        if cfg.distortion_weight:
            loss = loss + cfg.distortion_weight * distortion(out.weights, out.positions, cfg.samples_per_ray).mean()
        self.optimizer.zero_grad(set_to_none=True)
        if loss.requires_grad:  # not when every sample of the batch was culled
            loss.backward()
            lr = self.learning_rate()
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.optimizer.step()
            if table.grad is not None:  # a deferred field's colour net learns even when every sample was culled
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
                if self.alignment_due():
                    found = self.align(progress)
                    if bar is not None:
                        bar.write(f"aligned the training poses at {100 * self.progress():.0f} %: median correction "
                                  f"{found['rotation_deg_median']:.2f} deg, {found['translation_mm_median']:.2f} mm "
                                  f"({found['seconds']:.0f} s)")
                stats = self.step()
                if len(self.heldout) and self.state.iteration % cfg.heldout_every == 0:
                    self.score_heldout()
                self.state.seconds += time.perf_counter() - t0
                if bar is not None:
                    bar.update(100 * self.progress() - bar.n)
                    held = self.state.heldout_psnr[-1][1] if self.state.heldout_psnr else float("nan")
                    bar.set_postfix(it=self.state.iteration, psnr=f"{stats['psnr']:.2f}", held_out=f"{held:.2f}",
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

    # -- poses and held-out readings ---------------------------------------------------------

    def alignment_due(self) -> bool:
        at = self.config.alignment.at
        return self.state.alignment_passes < len(at) and self.progress() >= at[self.state.alignment_passes]

    def snapshot(self) -> AvatarBundle:
        """The field as it stands, as a bundle the renderers take (shares the field's tensors)."""
        from nerfconf.codec.config import CodecConfig  # noqa: PLC0415
        from nerfconf.types import ParamLayout  # noqa: PLC0415

        if self.face_model is None:
            raise ValueError("a snapshot of the avatar needs the face model")
        data, train = self.data, self.train_frames
        if self._codec is None:
            self._codec = CodecConfig.fit(ParamLayout(self.field.config.n_expression, translation=True),
                                          data.sender_params(train))
        rest = [float(v) for v in np.median(data.translations[train], axis=0)]
        return AvatarBundle(self.field.eval(), self.occupancy.mask.cpu(), self.face_model, self._codec,
                            data.resolution, data.focal, {"rest_translation": rest})

    def align(self, progress: bool = False) -> dict:
        """One alignment pass over the training frames (``avatar.align``)."""
        with torch.no_grad():
            found = align_pass(self.snapshot(), self.data, self.poses, self.config.alignment, self.train_frames,
                               progress=progress)
        self.field.train()
        found["iteration"] = self.state.iteration
        self.state.alignment_passes += 1
        self.state.alignment.append(found)
        return found

    def score_heldout(self) -> float:
        """Mean PSNR of the held-out frames picked at the start, rendered from the tracker's poses."""
        from nerfconf.avatar.rendering.fast import Renderer  # noqa: PLC0415
        from nerfconf.types import FaceParams  # noqa: PLC0415

        with torch.no_grad():
            renderer = Renderer(self.snapshot())
            data, scores = self.data, []
            for i in self.heldout:
                pose = self.poses.tracked[i]
                frame = renderer.render(FaceParams(data.expressions[i].astype(np.float64), pose[:3].copy(),
                                                   pose[3:].copy(), True, 0.0, int(i)))
                mse = np.mean((frame.image.astype(np.float32) - data.images[i].astype(np.float32)) ** 2) / 255**2
                scores.append(-10 * math.log10(max(float(mse), 1e-10)))
        self.field.train()
        value = float(np.mean(scores))
        self.state.heldout_psnr.append([self.state.iteration, round(value, 3)])
        return value

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
        tensors["poses.corrections"] = torch.from_numpy(self.poses.corrections.copy())
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
        if "poses.corrections" in tensors:  # checkpoints before per-frame corrections have none
            corrections = tensors["poses.corrections"].cpu().numpy().astype(np.float64)
            if corrections.shape != self.poses.tracked.shape:
                raise ValueError(f"{path} holds pose corrections of another dataset; remove it to start over")
            self.poses.corrections = corrections
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
