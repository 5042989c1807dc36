"""Shared builders for the scheduling tests."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from invarlock_core.scheduling import SchedulingKnobs, Task, TaskCommand

SCRIPT = Path(__file__).with_name("task_script.py")

FAST = SchedulingKnobs(
    worker_idle_sleep=0.02,
    worker_heartbeat_interval=0.2,
    retry_backoff_base=0.01,
    retry_backoff_max=0.05,
    cancel_blocked_tasks_grace_seconds=0.0,
    task_max_retries=2,
    num_gpus=2,
)


def script_task(
    task_id: str, mode: str = "mark", *extra: str, deps: Sequence[str] = (), **fields: object
) -> Task:
    """A task running task_script.py that declares its marker as output."""
    command = TaskCommand(argv=(sys.executable, str(SCRIPT), mode, task_id, *extra))
    return Task(
        id=task_id, deps=tuple(deps), command=command, outputs=(f"markers/{task_id}",), **fields
    )  # type: ignore[arg-type]


def poll(condition: Callable[[], bool], seconds: float = 60.0, what: str = "condition") -> None:
    """Wait for ``condition`` with a bound (never a fixed sleep)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
