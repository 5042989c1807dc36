"""Warm task start: run a Python entry-point task in a fork of its (already warm) worker.

A fresh interpreter that imports torch and a transformers model class costs seconds, often more
than a small model's whole task. A task whose command sets ``INVARLOCK_WARM_START=1`` in its
``env`` is therefore started by forking the worker instead: the worker imports the modules listed
in ``INVARLOCK_WARM_PRELOAD`` (comma-separated) once, before its first such task, and each task
then begins with those imports already done. Everything else matches a subprocess start: the
child gets its own session (so timeouts kill its whole group), dies with the worker
(``PR_SET_PDEATHSIG``), writes to the task log, sees exactly the task's environment and working
directory, and exits with the entry point's status.

The worker itself never runs model code, so no thread pools or CUDA contexts exist at fork time;
CUDA is initialised in the child, after ``CUDA_VISIBLE_DEVICES`` is set.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import select
import subprocess
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

__all__ = [
    "PRELOAD_ENV",
    "WARM_ENV",
    "ForkedTask",
    "fork_entry_point",
    "preload",
    "wants_warm_start",
]

WARM_ENV: Final = "INVARLOCK_WARM_START"
PRELOAD_ENV: Final = "INVARLOCK_WARM_PRELOAD"
_preloaded: set[str] = set()


def wants_warm_start(env: Mapping[str, str], entry_point: str | None) -> bool:
    """Whether a task with this command environment and entry point starts warm (Linux only)."""
    return (
        entry_point is not None
        and env.get(WARM_ENV, "") == "1"
        and hasattr(os, "fork")
        and hasattr(os, "pidfd_open")
    )


def preload(names: str) -> None:
    """Import each listed module once in this (worker) process."""
    for name in (part.strip() for part in names.split(",")):
        if name and name not in _preloaded:
            importlib.import_module(name)
            _preloaded.add(name)


class ForkedTask:
    """The parent's handle on a forked task: the subset of :class:`subprocess.Popen` the launcher uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._fd = os.pidfd_open(pid)

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is not None:
            return self.returncode
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            raise subprocess.TimeoutExpired(f"task pid {self.pid}", timeout or 0.0)
        _, status = os.waitpid(self.pid, 0)
        os.close(self._fd)
        self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


def _child(
    entry_point: str,
    params_path: Path,
    env: Mapping[str, str],
    cwd: Path,
    log_fd: int,
    setup: Callable[[], None],
) -> None:
    code = 1
    try:
        os.setsid()
        setup()
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        from invarlock_core.scheduling.entry import main

        code = main([entry_point, str(params_path)])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # the traceback is what the failure classifier reads
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def fork_entry_point(
    entry_point: str,
    params_path: Path,
    env: Mapping[str, str],
    cwd: Path,
    log_fd: int,
    setup: Callable[[], None],
) -> ForkedTask:
    """Start ``entry_point(params)`` in a fork of this process; ``setup`` runs first in the child."""
    preload(env.get(PRELOAD_ENV, ""))
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns (coverage cannot see it)
        _child(entry_point, params_path, env, cwd, log_fd, setup)
    return ForkedTask(pid)
