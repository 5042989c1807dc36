"""Reliability drills: make chosen suite tasks fail on their first attempt, the way real ones do.

``INVARLOCK_SUITE_FAULTS="<task id>=<fault>[,<task id>=<fault>...]"`` with ``<fault>`` one of

* ``oom``: print a CUDA out-of-memory message and exit 1 (the scheduler halves batch and sequence
  length and retries);
* ``crash``: exit 1 with an unclassified error (retried with backoff);
* ``hang``: block until killed (``TASK_TIMEOUT_<TYPE>`` kills the process group);
* ``permanent``: exit 2 (never retried).

Only attempt 1 is affected, so each drill shows the recovery path. Unset, this does nothing.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Final

from invarlock_core.scheduling import TaskType

__all__ = ["FAULTS_ENV", "inject_fault"]

FAULTS_ENV: Final = "INVARLOCK_SUITE_FAULTS"
_KINDS: Final = ("oom", "crash", "hang", "permanent")


def _planned(task_id: str) -> str | None:
    for item in os.environ.get(FAULTS_ENV, "").split(","):
        name, _, fault = item.strip().partition("=")
        if name == task_id and fault in _KINDS:
            return fault
    return None


def inject_fault(kind: TaskType) -> None:
    """Fail now if a drill names this task (``INVARLOCK_TASK_ID``) and this is attempt 1."""
    fault = _planned(os.environ.get("INVARLOCK_TASK_ID", ""))
    if fault is None or os.environ.get("INVARLOCK_TASK_ATTEMPT", "1") != "1":
        return
    if fault == "hang":
        signal.pause()  # wait for the scheduler's SIGTERM/SIGKILL, doing nothing
    messages = {
        "oom": (1, "torch.OutOfMemoryError: CUDA out of memory (fault drill)"),
        "crash": (1, f"RuntimeError: {kind.value} crashed (fault drill)"),
        "permanent": (2, "error: invalid task input (fault drill)"),
    }
    code, message = messages[fault]
    print(message, file=sys.stderr, flush=True)
    raise SystemExit(code)
