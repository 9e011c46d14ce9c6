"""What every command shares: user-facing errors and argument types."""

from __future__ import annotations

import argparse
from pathlib import Path


class UserError(Exception):
    """A problem the user can fix; printed as one line, without a traceback."""


def existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {path}")
    return path


def existing_dir(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"no such directory: {path}")
    return path


def load_track(path: Path | None):
    """A parameter track from a file, or the synthetic stand-in when ``path`` is None."""
    from nerfconf.tracks import ParamTrack, synthetic_track  # noqa: PLC0415

    if path is None:
        return synthetic_track(2000)
    try:
        return ParamTrack.load(path)
    except ValueError as exc:
        raise UserError(str(exc)) from exc


def load_face_model(path: Path):
    from nerfconf.face.model import FaceModel, FaceModelError  # noqa: PLC0415

    try:
        return FaceModel.load(path)
    except FaceModelError as exc:
        raise UserError(str(exc)) from exc


def sent_layout(track, translation: bool):
    """The track as the codec sees it: translation dropped unless asked for."""
    from nerfconf.types import ParamLayout  # noqa: PLC0415

    if translation and not track.layout.translation:
        raise UserError("this track has no translation to send")
    return track.with_layout(ParamLayout(track.layout.n_expression, translation))


#: ``--mlp-precision`` choices and what they mean for ``TrainConfig.bf16_mlp``
MLP_PRECISIONS = {"auto": None, "bf16": True, "float32": False}


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """``--device``, ``--mlp-precision`` and ``--threads``, shared by enroll and bench train."""
    parser.add_argument("--device", default="cpu",
                        help="training device: cpu (numba hash-grid kernels) or cuda (torch gathers); default cpu")
    parser.add_argument("--mlp-precision", choices=tuple(MLP_PRECISIONS), default="auto",
                        help="precision of the MLPs during training; auto: bfloat16 where the hardware computes "
                        "it natively (AVX512-BF16/AMX CPUs, recent GPUs), else float32 (default auto)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch and numba (default: all); on a machine shared with other busy "
                        "processes 1 thread can be faster than 2, since threads wait for each other at every "
                        "parallel step")


def apply_training_options(args: argparse.Namespace) -> None:
    """Checks ``--device`` and applies ``--threads``; raises UserError for an unusable device."""
    import numba  # noqa: PLC0415
    import torch  # noqa: PLC0415

    try:
        device = torch.device(args.device)
    except RuntimeError as exc:
        raise UserError(f"--device {args.device}: not a torch device ({exc})") from exc
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device {args.device}: training runs on cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: no CUDA device is available here")
    if args.threads:
        if args.threads < 1:
            raise UserError(f"--threads {args.threads}: must be at least 1")
        torch.set_num_threads(args.threads)
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))


#: the sender's default ``--refine-every`` (``avatar.pose_fit.DEFAULT_REFINE_EVERY``; cv2-free here)
REFINE_EVERY = 2

REFINE_HELP = ("correct each head pose through your own avatar before sending it (on by default: one small "
               "render every --refine-every frames on one core); an avatar enrolled with aligned poses is drawn "
               "sharp only from poses fitted the same way. --no-refine-pose sends the tracker's poses as they "
               "are; see docs/avatar.md")


RENDER_THREADS_HELP = ("CPU threads of the renderer (default: every core but one where this machine also sends, "
                       "since a render that shares every core with the sender's tracking stalls; every core where "
                       "it only receives)")

ADAPTIVE_HELP = ("render smaller, and scale up, while frames take longer than the frame rate allows on this host "
                 "(on by default: a slow host keeps every frame and a bounded latency, and the log says so once); "
                 "--no-adaptive-resolution keeps the full size and skips the frames it cannot render in time")

REFINE_EVERY_HELP = (f"fit the pose every Nth frame only (1..25, default {REFINE_EVERY}); the frames between keep "
                     "the last correction: 1 is a little more accurate and costs twice as much")


def refine_every(n: int) -> int:
    """``--refine-every``, checked."""
    if not 1 <= n <= 25:
        raise UserError(f"--refine-every must be 1..25, got {n}")
    return n


# -- options several commands share: one definition each, so their defaults cannot drift --------

#: where commands that need the shared test videos look for them, unless --data says otherwise
DATA_ENV = "NERFCONF_DATA"
DEFAULT_DATA = Path("../shared/data")
#: the test clip the benchmarks and the paper's RD comparison use
ANCHOR_CLIP = "cnn2_25fps.mp4"


def add_avatar_option(parser: argparse.ArgumentParser, *, required: bool = True,
                      help: str = "avatar bundle directory") -> None:
    parser.add_argument("--avatar", type=existing_dir, required=required, default=None, help=help)


def add_video_option(parser: argparse.ArgumentParser, *, required: bool = False,
                     help: str = "the video the avatar was enrolled from: its held-out frames are used") -> None:
    parser.add_argument("--video", type=existing_file, required=required, default=None, help=help)


def add_test_frames_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--test-frames", type=positive_int, default=None,
                        help="held-out frames at the end of --video (default: the avatar's own split, as "
                        "enrollment recorded it)")


def add_json_option(parser: argparse.ArgumentParser, help: str = "print one JSON object") -> None:
    parser.add_argument("--json", action="store_true", help=help)


def add_data_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--data", type=Path, default=None,
                        help=f"directory with {what} (default: ${DATA_ENV}, else {DEFAULT_DATA})")


def data_file(args: argparse.Namespace, name: str) -> Path:
    """A file of the shared test data: ``--data``, else ``$NERFCONF_DATA``, else ``../shared/data``."""
    import os  # noqa: PLC0415

    root = args.data or Path(os.environ.get(DATA_ENV) or DEFAULT_DATA)
    path = root / name
    if not path.is_file():
        raise UserError(f"{path} not found: this command needs the shared test videos; point --data "
                        f"(or ${DATA_ENV}) at the directory that holds {name}")
    return path


def host_port(text: str) -> tuple[str, int]:
    """``[HOST:]PORT`` (an IPv6 host in brackets or bare), for --listen and --target; HOST defaults to
    127.0.0.1 and PORT 0 asks for any free port."""
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        # checked here: a port past 65535 reaches the socket as an OverflowError traceback
        raise argparse.ArgumentTypeError(f"expected [HOST:]PORT with PORT 0..65535, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
