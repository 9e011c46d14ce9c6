"""``nerfconf enroll``: from one video of a person to their avatar bundle.

The work directory (``<bundle>/.work``) keeps the prepared frames and the
training checkpoint, so an interrupted enrollment resumes where it stopped.

The defaults are the best recipe found on cnn2 within a 30-minute budget on two
cores (docs/RESULTS.md, "The avatar"): 16 expression components, blend weights over
their spread, expression noise 0.3, and 26 minutes of training, which leaves the rest
of the half hour for preparing the frames and writing the bundle. Aligning the
training poses through the avatar as it trains (``avatar.align``) is built but off:
at this budget it cost an eighth of the iterations and gained nothing once the
sender refines its poses, which it does by default. ``QUICK`` is a first try in a
few minutes.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from nerfconf.avatar.bundle import AvatarBundle
from nerfconf.avatar.fields.field import FieldConfig
from nerfconf.avatar.training.align import AlignConfig
from nerfconf.avatar.training.dataset import AvatarData, prepare
from nerfconf.avatar.training.trainer import TrainConfig, Trainer
from nerfconf.codec.config import CodecConfig
from nerfconf.face.model import FaceModel
from nerfconf.face.segment import NECK_MARGIN
from nerfconf.tracks import HELD_OUT_FRAMES
from nerfconf.types import ParamLayout


@dataclass(frozen=True)
class EnrollConfig:
    resolution: int = 256
    test_frames: int = HELD_OUT_FRAMES
    n_expression: int = 16
    log2_table: int = 13
    #: the run ends at whichever of these comes first; with the defaults it is the time budget
    iterations: int = 200_000
    max_minutes: float | None = 26.0
    crop: bool = True
    #: torch device for training; the bundle is the same whichever trained it
    device: str = "cpu"
    #: MLPs in bfloat16 during training (None: where the hardware has it natively)
    bf16_mlp: bool | None = None
    #: Gaussian noise on the training expressions, in units of each coefficient's spread
    expression_noise: float = 0.3
    #: photometric loss, "l1" or "l2" (``TrainConfig.photometric``)
    photometric: str = "l1"
    #: how far below the chin the head mask keeps the neck, in face heights (docs/head_mask.md)
    neck_margin: float = NECK_MARGIN
    #: degree of the view direction's spherical harmonics the colour net sees (``FieldConfig.sh_degree``)
    sh_degree: int = 4
    #: train on parameters smoothed without lag (forward and backward), not the sender's lagging ones
    zero_phase: bool = False
    #: refit every training frame's pose through the avatar as it trains (``avatar.align``)
    pose_alignment: bool = False
    #: weight of the distortion loss, which gathers each ray's density at a surface (0: off). On cnn2
    #: at equal iterations, 0.3 against 0.1 kept held-out quality (28.56 against 28.58 dB, LPIPS 0.075
    #: against 0.078) with 40 % fewer field samples a frame; 1.0 lost 0.4 dB (docs/RESULTS.md)
    distortion: float = 0.3
    #: "deferred" (colour net once per pixel) or "sample" (NeRFBlendShape's, once per sample)
    shading: str = "deferred"
    #: fraction of the run during which the opacity is also fitted to the head mask
    mask_loss_until: float = 0.3


#: a first try: the same recipe with a quarter of the training time
QUICK = EnrollConfig(max_minutes=6.0)


def video_digest(path: Path) -> str:
    """SHA-256 of the video's bytes: what a resumed enrollment must have been started from.

    The whole file, not its path (a path can be given a new clip) nor its size and time (a copy
    keeps neither): hashing runs at about 1 GB/s, 3 ms for the 3 MB obama.mp4, against the half
    hour an enrollment takes.
    """
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def claim_work(work: Path, video: Path, config: EnrollConfig) -> None:
    """Takes the work directory for this video and these settings, or refuses: the frames and
    checkpoint in it were made from its video with its settings, and must not be reused for
    another clip at the same path."""
    work.mkdir(parents=True, exist_ok=True)
    settings = work / "settings.json"
    wanted = {"video_sha256": video_digest(video), **asdict(config)}
    for key in ("iterations", "max_minutes", "device", "bf16_mlp"):  # these may change on resuming
        wanted.pop(key)
    if settings.is_file():
        held = json.loads(settings.read_text())
        if "video_sha256" not in held:
            raise ValueError(f"{work} holds an enrollment begun by an earlier nerfconf, which recorded the "
                             "video's path rather than its content; remove it to start over")
        if held["video_sha256"] != wanted["video_sha256"]:
            raise ValueError(f"{work} holds an interrupted enrollment of another video (or of an earlier version "
                             f"of {video.name}); remove {work} to start over from this one")
        if held != wanted:
            changed = sorted(k for k in wanted.keys() | held.keys() if held.get(k) != wanted.get(k))
            raise ValueError(f"{work} holds an enrollment with other settings ({', '.join(changed)}); "
                             "remove it to start over")
    settings.write_text(json.dumps(wanted))


def enroll(video: str | Path, output: str | Path, config: EnrollConfig, *, progress: bool = True) -> AvatarBundle:
    output = Path(output)
    work = output / ".work"
    claim_work(work, Path(video), config)
    data_path = work / "frames.npz"
    if data_path.is_file() and (work / "face_model.json").is_file():
        data, model = AvatarData.load(data_path), FaceModel.load(work)
    else:
        model, data, crop = prepare(
            video, resolution=config.resolution, test_frames=config.test_frames,
            n_expression=config.n_expression, auto_crop=config.crop, neck_margin=config.neck_margin,
            zero_phase=config.zero_phase,
            progress=progress,
        )
        data.save(data_path)
        model.save(work)
    k = model.n_expression
    bounds = (model.bounds_lo[:k].astype(np.float32), model.bounds_hi[:k].astype(np.float32))
    # Blend weights in units of each coefficient's spread over the training frames.
    spread = np.maximum(data.expressions[data.train_indices].std(axis=0), 1e-3)
    field_config = FieldConfig(n_expression=k, log2_table=config.log2_table, sh_degree=config.sh_degree,
                               shading=config.shading,
                               expression_scale=tuple(round(float(v), 4) for v in spread))
    train_config = TrainConfig(iterations=config.iterations, max_minutes=config.max_minutes, device=config.device,
                               bf16_mlp=config.bf16_mlp, expression_noise=config.expression_noise,
                               photometric=config.photometric, distortion_weight=config.distortion,
                               mask_loss_until=config.mask_loss_until,
                               alignment=AlignConfig() if config.pose_alignment else AlignConfig.off())
    trainer = Trainer(data, field_config, train_config, bounds, work, face_model=model)
    trainer.load_checkpoint()
    started = time.time()
    state = trainer.train(progress=progress)
    np.savez(work / "training_poses.npz", tracked=trainer.poses.tracked, corrections=trainer.poses.corrections,
             train=data.train_indices)

    # The codec section: bounds and priors from the training frames' parameters as the sender sends them.
    # Translation is sent: without it the receiver draws the head at its rest position, which on
    # cnn2's held-out frames scores 18.0 dB against 26.5 (docs/experiments.md, "Where the head is"), for 0.2 kbps.
    layout = ParamLayout(k, translation=True)
    train = data.train_indices
    codec = CodecConfig.fit(layout, data.sender_params(train))
    bundle = AvatarBundle(
        field=trainer.field.cpu().eval(),
        occupancy=trainer.occupancy.mask.cpu(),
        face_model=model,
        codec=codec,
        resolution=data.resolution,
        focal=data.focal,
        metadata={
            "source": Path(video).name,
            "rest_translation": [round(float(v), 5) for v in np.median(data.translations[train], axis=0)],
            "training": {
                "iterations": state.iteration,
                "seconds": round(state.seconds, 1),
                "wall_seconds_this_run": round(time.time() - started, 1),
                "last_batch_psnr": round(state.last_psnr, 2),
                "train_frames": int(len(train)),
                "test_frames": int(data.test_frames),
                "config": asdict(train_config),
                "bf16_mlp": trainer.bf16,
                "alignment_passes": state.alignment,
                "heldout_psnr": state.heldout_psnr,
            },
        },
    )
    bundle.save(output)
    return bundle

