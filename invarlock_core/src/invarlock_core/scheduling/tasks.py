"""Typed tasks and task graphs.

A :class:`Task` is one unit of work on one model: its type, dependencies, memory estimate,
``required_gpus`` and the command that performs it (an argv or a Python entry point with JSON
parameters). A :class:`TaskGraph` is a validated DAG of tasks: unique ids, known dependencies, no
cycles. Graphs round-trip through JSON (schema ``task_graph``) with the product converter.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from invarlock_core.atomic import atomic_write_json
from invarlock_core.errors import UsageError
from invarlock_core.schema_validation import validate_instance
from invarlock_core.serialization import structure, unstructure

__all__ = [
    "BASE_PRIORITY",
    "GRAPH_FORMAT",
    "Task",
    "TaskCommand",
    "TaskGraph",
    "TaskState",
    "TaskType",
]

GRAPH_FORMAT = "invarlock-task-graph-v1"


class TaskType(enum.StrEnum):
    """The kinds of task a validation suite is made of."""

    SETUP_BASELINE = "SETUP_BASELINE"
    CALIBRATION_RUN = "CALIBRATION_RUN"
    GENERATE_PRESET = "GENERATE_PRESET"
    CREATE_EDITS_BATCH = "CREATE_EDITS_BATCH"
    CREATE_EDIT = "CREATE_EDIT"
    EVALUATE_EDIT = "EVALUATE_EDIT"
    CREATE_ERROR = "CREATE_ERROR"
    EVALUATE_ERROR = "EVALUATE_ERROR"
    CLEANUP = "CLEANUP"
    GENERIC = "GENERIC"


class TaskState(enum.StrEnum):
    """Lifecycle: PENDING -> READY -> RUNNING -> COMPLETED or FAILED (retries go back to READY)."""

    PENDING = "pending"
    READY = "ready"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


BASE_PRIORITY: Mapping[TaskType, int] = {
    TaskType.SETUP_BASELINE: 90,
    TaskType.CALIBRATION_RUN: 85,
    TaskType.GENERATE_PRESET: 75,
    TaskType.CREATE_EDITS_BATCH: 70,
    TaskType.CREATE_EDIT: 70,
    TaskType.EVALUATE_EDIT: 65,
    TaskType.CREATE_ERROR: 60,
    TaskType.EVALUATE_ERROR: 55,
    TaskType.CLEANUP: 50,
    TaskType.GENERIC: 50,
}
"""Base priorities by task type (higher runs first)."""


@attrs.frozen
class TaskCommand:
    """How a task runs: exactly one of ``argv`` or ``entry_point`` (``"package.module:function"``).

    ``params`` (JSON) reach the process as the file named by ``INVARLOCK_TASK_PARAMS``; an entry
    point is called as ``function(params)`` in a fresh interpreter. ``env`` is added to the
    process environment; ``cwd`` is relative to the run's output directory unless absolute.
    """

    argv: tuple[str, ...] | None = None
    entry_point: str | None = None
    params: Mapping[str, Any] = attrs.field(factory=dict)
    env: Mapping[str, str] = attrs.field(factory=dict)
    cwd: str | None = None

    def __attrs_post_init__(self) -> None:
        if (self.argv is None) == (self.entry_point is None):
            raise UsageError("a task command needs exactly one of argv or entry_point")
        if self.argv is not None and not self.argv:
            raise UsageError("a task command's argv is empty")
        if self.entry_point is not None and ":" not in self.entry_point:
            raise UsageError(
                f"entry point {self.entry_point!r} is not of the form 'module:function'"
            )


@attrs.frozen
class Task:
    """One schedulable unit of work.

    ``memory_gb`` is the whole task's memory estimate; ``required_gpus`` devices are reserved for
    it (see :mod:`invarlock_core.scheduling.memory`). ``estimated_seconds`` drives the simulator
    and lower bounds. ``outputs`` (paths relative to the output directory) let a resumed run skip a
    task whose results already exist. ``batch_size``/``seq_len`` are halved on OOM retries.
    """

    id: str
    type: TaskType = TaskType.GENERIC
    model: str = ""
    deps: tuple[str, ...] = ()
    memory_gb: float = 0.0
    required_gpus: int = 1
    estimated_seconds: float = 60.0
    model_size_gb: float = 0.0
    command: TaskCommand | None = None
    outputs: tuple[str, ...] = ()
    batch_size: int | None = None
    seq_len: int | None = None
    max_retries: int | None = None
    labels: Mapping[str, str] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if not self.id or any(ch in self.id for ch in "/\\\n\r\t ") or self.id.startswith("."):
            raise UsageError(
                f"task id {self.id!r} is empty or contains a path separator or whitespace"
            )
        if self.required_gpus < 1:
            raise UsageError(f"task {self.id}: required_gpus must be at least 1")
        if self.memory_gb < 0 or self.estimated_seconds < 0:
            raise UsageError(f"task {self.id}: memory and duration estimates must be >= 0")
        if self.id in self.deps:
            raise UsageError(f"task {self.id} depends on itself")

    @property
    def base_priority(self) -> int:
        return BASE_PRIORITY[self.type]


@attrs.frozen
class TaskGraph:
    """A validated DAG of tasks in a stable (insertion) order."""

    tasks: tuple[Task, ...]
    name: str = "graph"
    _by_id: dict[str, Task] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        ids: dict[str, Task] = {}
        for task in self.tasks:
            if task.id in ids:
                raise UsageError(f"task id {task.id!r} appears twice in graph {self.name!r}")
            ids[task.id] = task
        for task in self.tasks:
            for dep in task.deps:
                if dep not in ids:
                    raise UsageError(f"task {task.id} depends on unknown task {dep!r}")
        object.__setattr__(self, "_by_id", ids)
        self.topological_order()  # raises on cycles

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)

    def __getitem__(self, task_id: str) -> Task:
        return self._by_id[task_id]

    def dependents(self) -> dict[str, list[str]]:
        """task id -> ids of the tasks that depend on it directly."""
        out: dict[str, list[str]] = {task.id: [] for task in self.tasks}
        for task in self.tasks:
            for dep in dict.fromkeys(task.deps):
                out[dep].append(task.id)
        return out

    def topological_order(self) -> list[str]:
        """Task ids with every dependency before its dependents (ties in insertion order)."""
        position = {task.id: index for index, task in enumerate(self.tasks)}
        unmet = {task.id: len(set(task.deps)) for task in self.tasks}
        dependents = self.dependents()
        heap = [position[tid] for tid, count in unmet.items() if count == 0]
        heapq.heapify(heap)
        order: list[str] = []
        while heap:
            tid = self.tasks[heapq.heappop(heap)].id
            order.append(tid)
            for child in set(dependents[tid]):
                unmet[child] -= 1
                if unmet[child] == 0:
                    heapq.heappush(heap, position[child])
        if len(order) != len(self.tasks):
            stuck = sorted(tid for tid, count in unmet.items() if count > 0)[:5]
            raise UsageError(
                f"graph {self.name!r} has a dependency cycle through {', '.join(stuck)}"
            )
        return order

    def bottom_levels(self) -> dict[str, float]:
        """Longest path (in estimated seconds) from each task to the end of the graph, itself included."""
        dependents = self.dependents()
        level: dict[str, float] = {}
        for tid in reversed(self.topological_order()):
            tail = max((level[child] for child in dependents[tid]), default=0.0)
            level[tid] = self[tid].estimated_seconds + tail
        return level

    def critical_path_seconds(self) -> float:
        """Length of the longest dependency chain in estimated seconds."""
        return max(self.bottom_levels().values(), default=0.0)

    def total_work_gpu_seconds(self) -> float:
        """Σ estimated_seconds · required_gpus."""
        return sum(task.estimated_seconds * task.required_gpus for task in self.tasks)

    def models(self) -> list[str]:
        """Models in order of first appearance."""
        return list(dict.fromkeys(task.model for task in self.tasks))

    @classmethod
    def merge(cls, graphs: Iterable[TaskGraph], name: str = "graph") -> TaskGraph:
        return cls(tuple(task for graph in graphs for task in graph.tasks), name=name)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = unstructure(self)
        data["format"] = GRAPH_FORMAT
        return data

    @classmethod
    def from_json(cls, data: Any, *, what: str = "task graph") -> TaskGraph:
        validate_instance(data, "task_graph", what=what)
        body = {key: value for key, value in data.items() if key != "format"}
        return structure(body, cls)

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> TaskGraph:
        from invarlock_core.json_files import read_json

        data = read_json(path, what="task graph")
        return cls.from_json(data, what=f"task graph {path}")
