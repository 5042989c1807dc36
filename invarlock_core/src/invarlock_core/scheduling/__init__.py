"""Task graphs, the GPU-aware scheduler, the durable SQLite queue and executors.

Build a :class:`TaskGraph` (by hand or with :func:`build_suite_graph`), then :func:`run_graph` it in
an output directory: the queue lives in ``OUTPUT_DIR/state/queue.sqlite3``, logs under
``OUTPUT_DIR/logs/``. :func:`simulate` measures a policy on virtual GPUs with the same code.
"""

from __future__ import annotations

from invarlock_core.scheduling.devices import Device, discover_devices
from invarlock_core.scheduling.executor import (
    Executor,
    ExecutorFactory,
    ExecutorOptions,
    RunSummary,
)
from invarlock_core.scheduling.failures import FailureClass, classify_failure, decide_retry
from invarlock_core.scheduling.knobs import SchedulingKnobs
from invarlock_core.scheduling.memory import MemoryPlanner, ModelProfile
from invarlock_core.scheduling.policy import POLICIES, make_policy
from invarlock_core.scheduling.run import run_graph
from invarlock_core.scheduling.simulator import SimulationResult, simulate
from invarlock_core.scheduling.store import TaskQueue
from invarlock_core.scheduling.suite_graph import SUITE_SHAPES, ScenarioCounts, build_suite_graph
from invarlock_core.scheduling.tasks import Task, TaskCommand, TaskGraph, TaskState, TaskType

__all__ = [
    "POLICIES",
    "SUITE_SHAPES",
    "Device",
    "Executor",
    "ExecutorFactory",
    "ExecutorOptions",
    "FailureClass",
    "MemoryPlanner",
    "ModelProfile",
    "RunSummary",
    "ScenarioCounts",
    "SchedulingKnobs",
    "SimulationResult",
    "Task",
    "TaskCommand",
    "TaskGraph",
    "TaskQueue",
    "TaskState",
    "TaskType",
    "build_suite_graph",
    "classify_failure",
    "decide_retry",
    "discover_devices",
    "make_policy",
    "run_graph",
    "simulate",
]
