"""The records the task queue hands out: claims, task and worker rows, progress snapshots."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from invarlock_core.scheduling.devices import Device
from invarlock_core.scheduling.tasks import Task, TaskState
from invarlock_core.serialization import unstructure

__all__ = ["Claim", "QueueProgress", "TaskRecord", "WorkerRecord"]

_TERMINAL = (TaskState.COMPLETED.value, TaskState.FAILED.value)


@attrs.frozen
class Claim:
    """A task a worker now owns: run it on ``devices`` as attempt ``attempt``."""

    task: Task
    devices: tuple[Device, ...]
    attempt: int
    failures: int
    score: float


@attrs.frozen
class TaskRecord:
    """One row of the queue, for status displays and tests."""

    id: str
    type: str
    model: str
    state: str
    attempts: int
    failures: int
    devices: tuple[str, ...]
    worker_id: str | None
    failure_class: str | None
    error: str | None
    skipped: bool
    batch_size: int | None
    seq_len: int | None
    created_at: float
    started_at: float | None
    finished_at: float | None


@attrs.frozen
class WorkerRecord:
    id: str
    device: str
    pid: int | None
    host: str | None
    state: str
    task_id: str | None
    heartbeat_at: float
    failures: int
    completed: int


@attrs.frozen
class QueueProgress:
    """Counts by state (overall and per model), workers, and the time of the snapshot."""

    updated_at: float
    total: int
    states: Mapping[str, int]
    models: Mapping[str, Mapping[str, int]]
    workers: tuple[WorkerRecord, ...]
    policy: str

    @property
    def finished(self) -> bool:
        return sum(self.states.get(state, 0) for state in _TERMINAL) == self.total

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = unstructure(self)
        data["format"] = "invarlock-schedule-progress-v1"
        data["finished"] = self.finished
        return data

