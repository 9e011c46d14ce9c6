"""``nerfconf enroll``: make a person's avatar bundle from a video of them."""

from __future__ import annotations

import argparse
from pathlib import Path

from nerfconf.commands.common import (
    MLP_PRECISIONS,
    UserError,
    add_training_options,
    apply_training_options,
    existing_file,
)
from nerfconf.commands.outputs import output_dir, writing
from nerfconf.tracks import HELD_OUT_FRAMES  # numpy only: cheap enough for building the parser

#: enrollment's default distortion weight (``EnrollConfig.distortion``; torch-free here)
DISTORTION = 0.3


def enroll(args: argparse.Namespace) -> int:
    from nerfconf.avatar.bundle import bundle_size_bytes  # noqa: PLC0415
    from nerfconf.avatar.training.enroll import QUICK, EnrollConfig, enroll  # noqa: PLC0415
    from nerfconf.capture.video import VideoError  # noqa: PLC0415

    apply_training_options(args)
    if not 0.0 <= args.expression_noise <= 2.0:
        raise UserError(f"--expression-noise {args.expression_noise}: must lie in [0, 2] (spreads)")
    if not 0.0 <= args.distortion <= 1.0:
        raise UserError(f"--distortion {args.distortion}: must lie in [0, 1]")
    if not 0.0 <= args.mask_loss_until <= 1.0:
        raise UserError(f"--mask-loss-until {args.mask_loss_until}: must lie in [0, 1]")
    if not 0.0 <= args.neck_margin <= 2.0:
        raise UserError(f"--neck-margin {args.neck_margin}: must lie in [0, 2] face heights")
    preset = QUICK if args.quick else EnrollConfig()
    max_minutes = preset.max_minutes if args.max_minutes is None else args.max_minutes
    if max_minutes is not None and max_minutes <= 0:
        raise UserError(f"--max-minutes {args.max_minutes}: must be positive")
    config = EnrollConfig(resolution=args.resolution, test_frames=args.test_frames, n_expression=args.k,
                          log2_table=args.table_bits, iterations=args.iters, max_minutes=max_minutes,
                          crop=not args.no_crop, device=args.device, bf16_mlp=MLP_PRECISIONS[args.mlp_precision],
                          expression_noise=args.expression_noise, photometric=args.loss,
                          neck_margin=args.neck_margin, sh_degree=args.view_degree,
                          zero_phase=args.training_smoothing == "zero-phase",
                          pose_alignment=args.pose_alignment, distortion=args.distortion, shading=args.shading,
                          mask_loss_until=args.mask_loss_until)
    try:
        _claim_output(args.output, args.force, args.video)
        with writing(args.output):  # an interrupted enrollment resumes from its .work directory
            bundle = enroll(args.video, args.output, config)
    except (VideoError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    t = bundle.metadata["training"]
    print(f"wrote {args.output}: {bundle.resolution}px avatar, {t['iterations']} iterations "
          f"({t['seconds'] / 60:.1f} min training), {bundle_size_bytes(args.output) / 1e6:.1f} MB")
    return 0


def _claim_output(output: Path, force: bool, video: Path) -> None:
    """Refuses to replace a finished avatar unless told to; an interrupted enrollment (a work
    directory without a bundle) is resumed as before. The video is opened first, so that a
    replacement that cannot start leaves the old avatar where it was."""
    from nerfconf.avatar.bundle import remove_bundle  # noqa: PLC0415
    from nerfconf.capture.video import probe  # noqa: PLC0415

    output_dir(output)
    if not (output / "bundle.json").is_file():
        return
    if not force:
        raise UserError(f"{output} already holds an avatar; --force replaces it (its held-out track and "
                        "evaluation files go with it), or choose another -o")
    probe(video)  # raises VideoError, naming what is wrong with it
    remove_bundle(output)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "enroll", help="train a person's NeRF head avatar from a video of them",
        description="Fits the face model, extracts every frame's pose and expression, makes head-only "
        "frames on white, trains the blendshape avatar and writes the avatar bundle. Interrupt it "
        "at any time: run the same command again to resume from the last checkpoint. With no options it "
        "makes the best avatar this project knows how to make in about 30 minutes on two CPU cores; "
        "--quick makes a first one in under 10.")
    p.add_argument("video", type=existing_file, help="a video of the person talking to the camera")
    p.add_argument("-o", "--output", type=Path, required=True, help="bundle directory, e.g. avatars/NAME")
    p.add_argument("--force", action="store_true",
                   help="replace the avatar already in -o (otherwise enroll refuses; an interrupted enrollment "
                   "there is resumed either way)")
    p.add_argument("--resolution", type=int, default=256, help="render resolution in pixels (default 256)")
    p.add_argument("--test-frames", type=int, default=HELD_OUT_FRAMES,
                   help=f"frames at the end never trained on, recorded in the bundle as its held-out split "
                   f"(default {HELD_OUT_FRAMES})")
    p.add_argument("-k", type=int, default=16, help="expression components (default 16; the paper's 46 blend "
                   "unseen combinations into texture noise)")
    p.add_argument("--table-bits", type=int, default=13,
                   help="log2 of hash-table rows per level (default 13; 11 makes a ~4x smaller avatar)")
    p.add_argument("--quick", action="store_true",
                   help="a first try: the same recipe with 6 minutes of training instead of 26")
    p.add_argument("--iters", type=int, default=200_000,
                   help="training iterations at most (default 200000: the time budget ends the run first)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="training-time budget in minutes, over resumed runs together (default 26, 6 with "
                   "--quick); the learning-rate schedule follows whichever of --iters and this budget runs out "
                   "first")
    p.add_argument("--expression-noise", type=float, default=0.3,
                   help="Gaussian noise added to each training frame's expression, in units of each "
                   "coefficient's spread: teaches the avatar expressions between the ones it saw (default 0.3)")
    p.add_argument("--pose-alignment", action="store_true",
                   help="refit each training frame's head pose through the avatar twice as it trains "
                   "(analysis by synthesis); sharper, but at the default budget it gained nothing once the "
                   "sender refines its poses, and it costs an eighth of the training time (default off)")
    p.add_argument("--loss", choices=("l1", "l2"), default="l1",  # trainer.PHOTOMETRIC_LOSSES (torch-free here)
                   help="photometric loss: l1 keeps edges crisper, l2 (the squared error PSNR scores) blurs "
                   "what the tracked pose cannot place exactly (default l1)")
    p.add_argument("--neck-margin", type=float, default=0.1,  # face.segment.NECK_MARGIN (cv2-free here)
                   help="how far below the chin the head mask keeps the neck, in face heights; the avatar "
                   "renders what it is trained on, and collars below it move with the torso, not the head "
                   "(default 0.1)")
    p.add_argument("--view-degree", type=int, choices=range(5), default=4, metavar="{0..4}",
                   help="spherical-harmonic degree of the view direction the colour depends on: 4 as in "
                   "NeRFBlendShape; lower leaves the colour less free to follow head pose, which a monocular "
                   "video ties to time (default 4)")
    p.add_argument("--training-smoothing", choices=("sender", "zero-phase"), default="sender",
                   help="how the training frames' tracked parameters are smoothed: as the sender smooths them "
                   "in a call (a filter that cannot look ahead, so it trails the head a little), or forward "
                   "and backward in time, without lag; the codec is fitted on the sender's either way "
                   "(default sender)")
    p.add_argument("--shading", choices=("deferred", "sample"), default="deferred",  # field.SHADINGS (torch-free)
                   help="deferred: features are composited along each ray and the colour network runs once "
                   "per pixel, with a one-layer density decoder per sample (a half to a third of the render cost "
                   "and 1.7x faster a training step); sample: NeRFBlendShape's colour network on every sample "
                   "(default deferred)")
    p.add_argument("--mask-loss-until", type=float, default=0.3,
                   help="fraction of the run during which the avatar's opacity is also fitted to the head mask, "
                   "so that it learns the silhouette before detail (default 0.3; 1 keeps it to the end)")
    p.add_argument("--distortion", type=float, default=DISTORTION,
                   help="weight of Mip-NeRF 360's distortion loss, which draws each ray's density together at "
                   f"the surface instead of a fog, so that rendering spends fewer samples a ray (default "
                   f"{DISTORTION}: the same held-out quality as 0.1 with 40 %% fewer samples on cnn2; 0 turns it "
                   "off)")
    add_training_options(p)
    p.add_argument("--no-crop", action="store_true", help="use whole frames instead of a crop around the head")
    p.set_defaults(func=enroll)
