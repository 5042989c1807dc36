"""Putting a finished directory in place of an old one so that a kill never loses either.

:func:`publish_directory` moves a complete staging directory to its final path. When the final
path already holds a directory, the two are swapped with one ``renameat2(RENAME_EXCHANGE)`` where
the kernel offers it (Linux 3.15+, most local filesystems): at every instant the final path holds
the old set or the new one. Elsewhere the swap takes two renames, old out then new in; the old
directory waits in a hidden ``.NAME.old-*`` sibling, and :func:`recover_leftovers`, run before
the next write to the same path, puts it back if the kill came between the two renames.

Staging directories are named ``.NAME.staging-PID-*``; leftovers of dead processes are removed by
:func:`recover_leftovers` (a live process's staging directory is left alone).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import functools
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Final

__all__ = ["exchange_paths", "publish_directory", "recover_leftovers", "staging_prefix"]

_RENAME_EXCHANGE: Final = 2
_AT_FDCWD: Final = -100
_UNSUPPORTED: Final = frozenset({errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP})


def staging_prefix(target: Path) -> str:
    """The name prefix of this process's staging directories for ``target``."""
    return f".{target.name}.staging-{os.getpid()}-"


@functools.cache  # finding libc may run ``ldconfig``: once per process is enough
def _renameat2() -> object | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        return libc.renameat2
    except (OSError, AttributeError, TypeError):
        return None


def exchange_paths(first: Path, second: Path) -> bool:
    """Atomically swap two existing paths; ``False`` when the OS or filesystem cannot."""
    call = _renameat2()
    if call is None:
        return False
    result = call(  # type: ignore[operator]
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), str(first))


def publish_directory(stage: Path, target: Path) -> None:
    """Move the complete directory ``stage`` to ``target``, replacing what is there."""
    if not (target.exists() or target.is_symlink()):
        os.replace(stage, target)
        return
    if exchange_paths(stage, target):
        shutil.rmtree(stage, ignore_errors=True)  # ``stage`` now holds the old directory
        return
    # Two-step fallback: a kill between the renames leaves the old set in ``trash/old``, which
    # recover_leftovers() moves back before the next write.
    trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.replace(target, trash / "old")
    os.replace(stage, target)
    shutil.rmtree(trash, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale_stage(name: str, base: str) -> bool:
    match = re.fullmatch(rf"\.{re.escape(base)}\.staging-(?:(\d+)-)?.*", name)
    if match is None:
        return False
    pid = match.group(1)
    return pid is None or (int(pid) != os.getpid() and not _pid_alive(int(pid)))


def recover_leftovers(target: Path) -> list[str]:
    """Undo what a killed writer of ``target`` left behind; returns what was done, one line each.

    A ``.NAME.old-*`` directory is moved back to ``target`` when ``target`` is missing (the kill
    came between the two renames of the fallback swap), else removed. Staging directories of
    processes that no longer run are removed.
    """
    parent = target.parent
    if not parent.is_dir():
        return []
    done: list[str] = []
    for entry in sorted(parent.iterdir()):
        if entry.name.startswith(f".{target.name}.old-") and entry.is_dir():
            old = entry / "old"
            if old.is_dir() and not (target.exists() or target.is_symlink()):
                os.replace(old, target)
                done.append(f"restored {target} from {entry.name}")
            shutil.rmtree(entry, ignore_errors=True)
            done.append(f"removed {entry.name}")
        elif _stale_stage(entry.name, target.name) and entry.is_dir():
            with contextlib.suppress(OSError):
                shutil.rmtree(entry)
                done.append(f"removed {entry.name}")
    return done
