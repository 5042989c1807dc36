"""Checking an output path before the work that produces it.

A command that will write a file or a directory checks the path first, so that a typo or an
unwritable location fails in a second with one line (exit 2) instead of after minutes of work,
or with a traceback: an existing device node, FIFO or socket is never replaced by a regular file,
and the nearest existing ancestor must accept a new file (probed by creating and removing one, which
also catches read-only mounts and pseudo filesystems such as ``/proc`` where permission bits say
nothing). The probe creates no directories.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from invarlock_core.errors import OutputError

__all__ = ["check_output_location", "output_problem"]


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def output_problem(path: str | Path, *, directory: bool = False) -> str | None:
    """Why ``path`` cannot be written as a file (or, with ``directory``, a directory); else None."""
    target = Path(path)
    try:
        info = os.stat(target)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        return f"cannot use {target}: {exc.strerror}"
    if info is not None:
        wanted = stat.S_ISDIR if directory else stat.S_ISREG
        if not wanted(info.st_mode):
            kind = "a directory" if directory else "a regular file"
            return f"{target} exists and is not {kind}; refusing to replace it"
    # A file is replaced through a sibling; a directory is staged beside it and written into.
    bases = {_nearest_existing(target.parent)}
    if directory and info is not None:
        bases.add(target)
    for base in sorted(bases):
        problem = _probe(base)
        if problem:
            return problem
    return None


def _probe(base: Path) -> str | None:
    if not base.is_dir():
        return f"cannot write under {base}: not a directory"
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=base)
    except OSError as exc:
        return f"cannot write under {base}: {exc.strerror}"
    os.close(fd)
    os.unlink(probe)
    return None


def check_output_location(path: str | Path, *, what: str, directory: bool = True) -> None:
    """Refuse, before any work, an output ``path`` that cannot be written: :class:`OutputError`
    (exit 2) with :func:`output_problem`'s reason."""
    problem = output_problem(path, directory=directory)
    if problem is not None:
        raise OutputError(f"{what} {path}: {problem}")
