"""File-system helpers: atomic writes (a temporary file beside the target, renamed when complete)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from brats.errors import BratsError

__all__ = ["atomic_path", "atomic_write_text", "check_output_dir"]


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffixes); rename it to ``path`` when the block succeeds.

    On an exception the temporary file is removed and ``path`` (if it existed) is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) if path.name.endswith(".nii.gz") else path.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give the final file the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def check_output_dir(path: str | Path, key: str) -> Path:
    """Check that the output folder ``path`` can be written (nothing is created: the writers create it).

    Raises:
        BratsError: naming ``key`` and the path, when ``path`` (or a folder above it) is a file, or the folder
            (or, when it does not exist yet, the nearest existing folder above it) is not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BratsError(f"{key} {path} is a file, not a folder")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise BratsError(f"{key} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BratsError(f"{key} {path}: the folder {existing} is not writable")
    return path
