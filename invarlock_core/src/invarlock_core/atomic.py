"""Atomic file and directory writes: nothing partial ever appears at a final path.

Files are written to a temporary sibling, flushed and fsynced, then moved into place with
``os.replace``. Directories are built in a hidden sibling and renamed once complete.

:func:`published_set` publishes a *set* of files (a report and its sidecars) into a directory
that may hold other things: the set is built in a hidden sibling, the two directories are swapped
in one step (``renameat2(RENAME_EXCHANGE)``; where the OS lacks it, two renames whose gap the next
run repairs), and the entries that are not part of the set move back from the old directory. At
every instant the directory holds the old set or the new one, never a mix, and nothing that is
not part of the set is ever deleted: a kill leaves it in the hidden sibling, from which the next
publication into the same directory moves it back.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from invarlock_core.canonical import canonical_json
from invarlock_core.directory_swap import (
    exchange_paths,
    publish_directory,
    recover_leftovers,
    staging_prefix,
)

__all__ = [
    "SetPublication",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "published_set",
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



def _carry_back(old: Path, target: Path, members: Callable[[str], bool]) -> None:
    """Move every non-member entry of ``old`` into ``target`` (unless it has one), drop ``old``."""
    for entry in sorted(old.iterdir()):
        if not members(entry.name) and not (target / entry.name).exists():
            os.replace(entry, target / entry.name)
    shutil.rmtree(old, ignore_errors=True)


def _recover(target: Path, members: Callable[[str], bool]) -> None:
    """Repair what a killed publication into ``target`` left: a missing directory comes back from
    its hidden copy; non-member entries move back; new sets that were never swapped in go."""
    for leftover in sorted(target.parent.glob(f".{target.name}.publishing-*")):
        if not target.exists():
            os.replace(leftover, target)
        elif leftover.is_dir():
            _carry_back(leftover, target, members)


def _swap_in(stage: Path, target: Path, members: Callable[[str], bool]) -> None:
    if not target.exists():
        os.replace(stage, target)
        return
    if exchange_paths(stage, target):
        _carry_back(stage, target, members)  # the stage now holds the old directory
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.publishing-", dir=target.parent))
    # Two renames (a directory may replace an empty one); a kill between them leaves no target,
    # and _recover then restores one of the two complete sets.
    os.replace(target, old)
    os.replace(stage, target)
    _carry_back(old, target, members)


class SetPublication:
    """One publication of a set of files at ``final``: write them into :attr:`stage`, then
    :meth:`publish` (or :meth:`discard`). Entries of ``final`` for which ``members(name)`` is
    false are never touched."""

    def __init__(self, final: str | Path, *, members: Callable[[str], bool]) -> None:
        self.target = Path(final).absolute()
        self.members = members
        self._created = [p for p in (self.target.parent, *self.target.parent.parents) if not p.exists()]
        self.target.parent.mkdir(parents=True, exist_ok=True)
        _recover(self.target, members)
        if self.target.exists() and not self.target.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "exists and is not a directory", str(self.target))
        self.stage = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.publishing-", dir=self.target.parent))

    def publish(self) -> None:
        """Replace the set at the target by the staged one, in one step."""
        strangers = [entry.name for entry in self.stage.iterdir() if not self.members(entry.name)]
        if strangers:
            raise ValueError(f"{', '.join(strangers)} are not members of the set published at {self.target}")
        _fsync_dir(self.stage)
        _swap_in(self.stage, self.target, self.members)
        _fsync_dir(self.target.parent)

    def discard(self) -> None:
        """Drop the staged set, and the parent directories this publication created for it."""
        shutil.rmtree(self.stage, ignore_errors=True)
        for created in self._created:  # innermost first; a directory that is not empty stays
            with contextlib.suppress(OSError):
                created.rmdir()


@contextlib.contextmanager
def published_set(final: str | Path, *, members: Callable[[str], bool]) -> Iterator[Path]:
    """Build the files of a set in the yielded staging directory; on success they replace the
    set in ``final`` as one set (see :class:`SetPublication`). On an exception nothing changes."""
    publication = SetPublication(final, members=members)
    try:
        yield publication.stage
        publication.publish()
    except BaseException:
        publication.discard()
        raise
