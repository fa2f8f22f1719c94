"""Writes that never leave a half-written file or folder under the final name."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import DonetError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.
    The temporary name ends as `path` does (`.x.zip` -> `.x.<random>.zip`): writers such as
    roifile choose the format by the suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def ensure_new_dir(path: str | Path) -> Path:
    """Refuse an output folder that already holds something: results are never overwritten silently."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise DonetError(path, "output already exists; choose another path or remove it")
    return path


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Build a folder under a temporary name and rename it onto `path` when the block succeeds."""
    path = ensure_new_dir(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            path.rmdir()  # empty, checked above
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
