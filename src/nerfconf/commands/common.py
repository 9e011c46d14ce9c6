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
