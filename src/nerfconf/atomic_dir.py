"""Replacing a directory of files as one step: readers see the old set or the new one, never a mix.

The new files are written into a staging directory beside the target (same file system, so
renames are atomic), and the staging directory is then swapped with the target. On Linux the
swap is one ``renameat2(RENAME_EXCHANGE)``; elsewhere it is two renames, with a window of
microseconds in which the target is missing (never half-written).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Collection, Iterator
from pathlib import Path


@contextlib.contextmanager
def replace_directory(target: Path, *, drop: Collection[str] = ()) -> Iterator[Path]:
    """Yields an empty staging directory; when the block ends, it becomes ``target``.

    What else ``target`` held is kept (hard-linked into the new directory, so nothing is
    copied and the old directory stays whole until the swap), except the names in ``drop``
    and those the block wrote anew. If the block raises, ``target`` is left as it was.
    """
    target = Path(target)
    if target.is_symlink():  # replace what the link points at, and keep the link
        target = target.resolve()
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target} is a file, not a directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.new-{os.getpid()}-{secrets.token_hex(4)}"
    staging.mkdir()  # not mkdtemp: its 0o700 would become the target's mode
    try:
        yield staging
        if not target.exists():
            _sync_tree(staging)
            os.rename(staging, target)
            _sync_dir(target.parent)
            return
        os.chmod(staging, stat.S_IMODE(target.stat().st_mode))
        written = {p.name for p in staging.iterdir()}
        for old in target.iterdir():
            if old.name not in written and old.name not in drop:
                _link_tree(old, staging / old.name)
        _sync_tree(staging)
        _exchange(staging, target)  # staging now holds the old directory
        _sync_dir(target.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _link_tree(src: Path, dst: Path) -> None:
    if src.is_dir() and not src.is_symlink():
        shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
    else:
        _link_or_copy(src, dst)


def _link_or_copy(src: str | Path, dst: str | Path) -> None:
    if os.path.islink(src):
        os.symlink(os.readlink(src), dst)
        return
    try:
        os.link(src, dst)
    except OSError:  # a file system without hard links
        shutil.copy2(src, dst)


def _exchange(a: Path, b: Path) -> None:
    """Swaps two directories' names, atomically where the system can."""
    if _renameat2 is not None:
        if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL):  # a kernel or file system without the flag
            raise OSError(err, os.strerror(err), str(b))
    aside = a.with_name(a.name + ".old")
    os.rename(b, aside)
    try:
        os.rename(a, b)
    except OSError:
        os.rename(aside, b)
        raise
    os.rename(aside, a)


def _sync_tree(root: Path) -> None:
    """fsync what was written, so that after a power cut the swapped-in names point at whole files."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir():
            _sync_dir(path)
        else:
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def _sync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # a system that cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2  # <fcntl.h>, <linux/fs.h>


def _load_renameat2() -> Callable[..., int] | None:
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # not Linux, or a C library before glibc 2.28
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    fn.restype = ctypes.c_int
    return fn


_renameat2 = _load_renameat2()
