"""Atomic file and directory writes: nothing partial ever appears at a final path.

Files are written to a temporary sibling, flushed and fsynced, then moved into place with
``os.replace``. Directories are built in a hidden sibling and renamed once complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from invarlock_core.canonical import canonical_json
from invarlock_core.directory_swap import publish_directory, recover_leftovers, staging_prefix

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "staged_directory",
]


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same directory, fsync, replace)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(target.parent)
    return target


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, value: Any, *, canonical: bool = False) -> Path:
    """Write ``value`` as JSON atomically.

    ``canonical=True`` writes the canonical (hashable) form; otherwise sorted keys with an
    indent of two, for humans. NaN and infinities are always rejected.
    """
    if canonical:
        data = canonical_json(value)
    else:
        data = (json.dumps(value, sort_keys=True, indent=2, allow_nan=False) + "\n").encode("utf-8")
    return atomic_write_bytes(path, data)


@contextlib.contextmanager
def staged_directory(final: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory in a hidden sibling and rename it to ``final`` on success.

    On any exception the staging directory is removed and ``final`` is untouched. With
    ``overwrite=True`` an existing ``final`` is replaced only after the new one is complete, by a
    swap that never leaves ``final`` missing (:mod:`invarlock_core.directory_swap`); what a killed
    earlier writer left beside ``final`` is recovered or removed first.
    """
    target = Path(final)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists")
    recover_leftovers(target)
    stage = Path(tempfile.mkdtemp(prefix=staging_prefix(target), dir=target.parent))
    try:
        yield stage
        publish_directory(stage, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
