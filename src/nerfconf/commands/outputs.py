"""Where commands write: each output checked before any work starts, and a full disk said in one line."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from pathlib import Path

from nerfconf.commands.common import UserError

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def output_file(path: Path, *inputs: Path | None, flag: str = "-o") -> Path:
    """``path``, if a file can be written there: not over one of the command's own inputs, not
    onto a directory, and not into a directory that does not exist (a typo there would otherwise
    surface as a traceback after the work was done)."""
    for source in inputs:
        if source is not None and source.exists() and path.exists() and path.resolve() == source.resolve():
            raise UserError(f"{flag} {path} is also an input of this command; write somewhere else")
    if path.is_dir():
        raise UserError(f"{flag} {path} is a directory; name a file")
    _parent_exists(path, flag)
    return path


def output_dir(path: Path, flag: str = "-o") -> Path:
    """``path``, if it is a directory or one can be made there (its parent exists)."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file; name a directory")
    _parent_exists(path, flag)
    return path


def _parent_exists(path: Path, flag: str) -> None:
    parent = path.parent
    if not parent.is_dir():
        what = "is a file" if parent.exists() else "does not exist"
        raise UserError(f"{flag} {path}: its directory {parent} {what}")


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the user's quota) is full."""
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
        return True
    # libraries that wrap the system's error in their own (safetensors) keep only its text
    return any(text in str(exc) for text in ("No space left on device", "Disk quota exceeded"))


@contextlib.contextmanager
def writing(path: Path, flag: str = "-o") -> Iterator[None]:
    """Turns a full disk while the block writes ``path`` into one line naming it; a file left
    half-written is removed, so that nothing truncated looks like a result."""
    try:
        yield
    except Exception as exc:
        if not disk_full(exc):
            raise
        if path.is_file():
            path.unlink()
            raise UserError(f"{flag} {path}: the disk is full; the partial file was removed. Free some space or "
                            "write elsewhere") from exc
        raise UserError(f"{flag} {path}: the disk is full; free some space or write elsewhere") from exc
