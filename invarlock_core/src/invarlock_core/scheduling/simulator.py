"""A discrete-event simulator: the real policy code on virtual GPUs.

Each virtual device runs one worker, exactly like the local executor; whenever a device is idle it
asks :func:`~invarlock_core.scheduling.policy.choose` for work, with the same candidates, static
priorities and :class:`~invarlock_core.scheduling.policy.SchedulerView` the durable queue would
build. Tasks take their ``estimated_seconds``. The result compares the makespan with the lower
bound ``max(total GPU-seconds / devices, critical path)``.
"""

from __future__ import annotations

import heapq

import attrs

from invarlock_core.errors import UsageError
from invarlock_core.scheduling.policy import (
    Candidate,
    DeviceSlot,
    ModelProgress,
    Policy,
    SchedulerView,
    choose,
    make_policy,
)
from invarlock_core.scheduling.tasks import TaskGraph

__all__ = ["SimulationResult", "TaskRun", "simulate"]


@attrs.frozen
class TaskRun:
    """When and where one task ran in the simulation."""

    task_id: str
    start: float
    end: float
    devices: tuple[str, ...]


@attrs.frozen
class SimulationResult:
    """Scheduling quality of one policy on one device configuration."""

    policy: str
    devices: int
    device_memory_gb: float
    tasks: int
    makespan_seconds: float
    lower_bound_seconds: float
    critical_path_seconds: float
    total_work_gpu_seconds: float
    utilisation: float
    runs: tuple[TaskRun, ...] = attrs.field(repr=False, eq=False)

    @property
    def ratio(self) -> float:
        """makespan / lower bound (1.0 is optimal)."""
        return self.makespan_seconds / self.lower_bound_seconds if self.lower_bound_seconds else 1.0

    def summary(self) -> dict[str, float | int | str]:
        return {
            "policy": self.policy,
            "devices": self.devices,
            "device_memory_gb": self.device_memory_gb,
            "tasks": self.tasks,
            "makespan_seconds": round(self.makespan_seconds, 3),
            "lower_bound_seconds": round(self.lower_bound_seconds, 3),
            "critical_path_seconds": round(self.critical_path_seconds, 3),
            "total_work_gpu_seconds": round(self.total_work_gpu_seconds, 3),
            "ratio": round(self.ratio, 4),
            "utilisation": round(self.utilisation, 4),
        }


def _check_feasible(graph: TaskGraph, devices: int, usable_gb: float) -> None:
    for task in graph:
        if task.required_gpus > devices:
            raise UsageError(
                f"task {task.id} needs {task.required_gpus} devices but only {devices} are available"
            )
        if task.memory_gb / task.required_gpus > usable_gb + 1e-9:
            raise UsageError(
                f"task {task.id} needs {task.memory_gb / task.required_gpus:.1f} GB per device "
                f"but a device offers {usable_gb:.1f} GB"
            )


def simulate(
    graph: TaskGraph,
    *,
    devices: int,
    device_memory_gb: float,
    policy: str | Policy = "small_first",
    memory_fraction: float = 0.92,
) -> SimulationResult:
    """Run ``graph`` on ``devices`` virtual devices of ``device_memory_gb`` each."""
    if devices < 1:
        raise UsageError("simulate needs at least one device")
    device_ids = [str(index) for index in range(devices)]
    usable = device_memory_gb * memory_fraction
    _check_feasible(graph, devices, usable)
    chosen = make_policy(policy, graph.tasks, device_ids) if isinstance(policy, str) else policy

    dependents = graph.dependents()
    seq = {task.id: index for index, task in enumerate(graph.tasks)}
    static = {
        task.id: chosen.static_priority(task, len(dependents[task.id]), seq[task.id])
        for task in graph
    }
    unmet = {task.id: len(set(task.deps)) for task in graph}
    totals: dict[str, float] = {}
    for task in graph:
        totals[task.model] = totals.get(task.model, 0.0) + task.estimated_seconds
    remaining = dict(totals)
    running_by_model: dict[str, int] = {}
    ready: dict[str, float] = {tid: 0.0 for tid, count in unmet.items() if count == 0}
    idle = set(device_ids)
    events: list[tuple[float, int, str, tuple[str, ...]]] = []
    runs: list[TaskRun] = []
    now = 0.0
    done = 0

    def candidates() -> list[Candidate]:
        out = []
        for tid, since in ready.items():
            task = graph[tid]
            out.append(
                Candidate(
                    tid,
                    task.type,
                    task.model,
                    task.memory_gb,
                    task.required_gpus,
                    static[tid],
                    seq[tid],
                    since,
                )
            )
        out.sort(key=lambda c: (-c.static_priority, c.seq))
        return out

    while done < len(graph):
        progressed = True
        while progressed and ready and idle:
            progressed = False
            view = SchedulerView.build(
                now,
                dict(running_by_model),
                {m: ModelProgress(totals[m], remaining[m]) for m in totals},
                min(ready.values(), default=None),
            )
            ordered = candidates()
            for device in sorted(idle, key=int):
                free = [DeviceSlot(d, usable) for d in idle if d != device]
                choice = choose(ordered, DeviceSlot(device, usable), free, view, chosen)
                if choice is None:
                    continue
                task = graph[choice.task_id]
                del ready[choice.task_id]
                idle.difference_update(choice.devices)
                running_by_model[task.model] = running_by_model.get(task.model, 0) + 1
                end = now + task.estimated_seconds
                heapq.heappush(events, (end, seq[task.id], task.id, choice.devices))
                runs.append(TaskRun(task.id, now, end, choice.devices))
                progressed = True
                break
        if not events:
            stuck = sorted(ready)[:3]
            raise UsageError(f"simulation cannot place ready tasks {stuck} on {devices} devices")
        now = events[0][0]
        while events and events[0][0] <= now:
            _, _, tid, used = heapq.heappop(events)
            task = graph[tid]
            idle.update(used)
            running_by_model[task.model] -= 1
            remaining[task.model] -= task.estimated_seconds
            done += 1
            for child in dependents[tid]:
                unmet[child] -= 1
                if unmet[child] == 0:
                    ready[child] = now
    work = graph.total_work_gpu_seconds()
    critical = graph.critical_path_seconds()
    bound = max(work / devices, critical)
    return SimulationResult(
        policy=chosen.name,
        devices=devices,
        device_memory_gb=device_memory_gb,
        tasks=len(graph),
        makespan_seconds=now,
        lower_bound_seconds=bound,
        critical_path_seconds=critical,
        total_work_gpu_seconds=work,
        utilisation=work / (devices * now) if now > 0 else 1.0,
        runs=tuple(runs),
    )

