"""The executor contract: how a queued graph gets run.

An :class:`ExecutorFactory` is what plugins register through ``invarlock_register_executors``
(``local`` and ``ray`` are built in). Its :meth:`~ExecutorFactory.create` returns an
:class:`Executor`, which names the devices it schedules on (those become the queue's pool) and runs
the queue to the end, returning a :class:`RunSummary`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import attrs

from invarlock_core.errors import EXIT_FAIL, EXIT_INTERNAL, EXIT_OK
from invarlock_core.scheduling.devices import Device
from invarlock_core.scheduling.knobs import SchedulingKnobs
from invarlock_core.scheduling.store import TaskQueue
from invarlock_core.serialization import unstructure

__all__ = ["Executor", "ExecutorFactory", "ExecutorOptions", "RunSummary", "summarize_run"]


@attrs.frozen
class ExecutorOptions:
    """What every executor gets: the run's directory and knobs, plus executor-specific settings."""

    output_dir: Path
    knobs: SchedulingKnobs = attrs.field(factory=SchedulingKnobs)
    settings: Mapping[str, str] = attrs.field(factory=dict)
    """Free-form executor settings (``ray``: ``address``)."""


@attrs.frozen
class RunSummary:
    """How a run ended."""

    total: int
    states: Mapping[str, int]
    skipped: int
    wall_seconds: float
    stopped: bool = False
    """True when the run stopped before finishing (shutdown requested or no worker left)."""
    reason: str = ""

    @property
    def exit_code(self) -> int:
        if self.stopped:
            return EXIT_INTERNAL
        return EXIT_OK if self.states.get("completed", 0) == self.total else EXIT_FAIL

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = unstructure(self)
        data["exit_code"] = self.exit_code
        return data


def summarize_run(queue: TaskQueue, wall_seconds: float, reason: str = "") -> RunSummary:
    """Write the final ``state/progress.json`` and summarise the queue's end state."""
    snapshot = queue.write_progress()
    return RunSummary(
        total=snapshot.total,
        states=dict(snapshot.states),
        skipped=sum(1 for record in queue.records() if record.skipped),
        wall_seconds=wall_seconds,
        stopped=bool(reason),
        reason=reason,
    )


@runtime_checkable
class Executor(Protocol):
    """Runs a queue on a set of devices."""

    def devices(self) -> list[Device]:
        """The pool this executor schedules on (stored in the queue when it is created)."""
        ...

    def run(self, queue: TaskQueue) -> RunSummary:
        """Run until every task is completed or failed (or the run is told to stop)."""
        ...


@runtime_checkable
class ExecutorFactory(Protocol):
    """Creates executors of one kind (``local``, ``ray``)."""

    @property
    def name(self) -> str: ...

    @property
    def summary(self) -> str: ...

    def unavailable_reason(self) -> str | None:
        """Why this executor cannot run here (a missing extra), or ``None``."""
        ...

    def create(self, options: ExecutorOptions) -> Executor: ...
