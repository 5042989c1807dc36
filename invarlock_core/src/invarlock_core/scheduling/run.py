"""Run (or resume) a task graph in an output directory with a registered executor."""

from __future__ import annotations

from pathlib import Path

from invarlock_core.errors import ConfigError, DependencyError, UsageError
from invarlock_core.plugins import Registries, get_registries
from invarlock_core.scheduling.executor import ExecutorOptions, RunSummary
from invarlock_core.scheduling.knobs import SchedulingKnobs
from invarlock_core.scheduling.store import TaskQueue
from invarlock_core.scheduling.tasks import TaskGraph

__all__ = ["run_graph"]


def run_graph(
    output_dir: str | Path,
    graph: TaskGraph | None = None,
    *,
    executor: str = "local",
    policy: str = "small_first",
    knobs: SchedulingKnobs | None = None,
    resume: bool = False,
    retry_failed: bool = False,
    settings: dict[str, str] | None = None,
    registries: Registries | None = None,
) -> RunSummary:
    """Queue ``graph`` in ``output_dir`` and run it, or (``resume=True``) continue the queue there.

    Resuming reclaims the tasks a crashed run left running; ``retry_failed`` also makes failed
    tasks runnable again. The knobs of this call apply to every worker of the run.
    """
    out = Path(output_dir)
    chosen = knobs or SchedulingKnobs.from_env()
    if chosen.worker_heartbeat_interval >= chosen.gpu_reservation_ttl:
        raise ConfigError(
            "WORKER_HEARTBEAT_INTERVAL must be shorter than GPU_RESERVATION_TTL, or reservations of "
            "running tasks would expire between heartbeats"
        )
    factory = (registries or get_registries()).executors.get(executor)
    reason = factory.unavailable_reason()
    if reason is not None:
        raise DependencyError(f"executor {executor!r} is unavailable: {reason}")
    runner = factory.create(ExecutorOptions(out, chosen, settings or {}))
    if resume:
        if graph is not None:
            raise UsageError(
                "resume continues the queue already in the output directory; do not pass a graph"
            )
        queue = TaskQueue(out, knobs=chosen)
        if retry_failed:
            queue.reset_failed()
    else:
        if graph is None:
            raise UsageError("a new run needs a task graph")
        if TaskQueue.exists(out):
            raise UsageError(
                f"{out} already holds a queue; resume it (--resume) or choose another directory"
            )
        queue = TaskQueue.create(out, graph, runner.devices(), policy=policy, knobs=chosen)
        graph.save(out / "state" / "graph.json")
    with queue:
        queue.save_knobs(chosen)
        return runner.run(queue)
