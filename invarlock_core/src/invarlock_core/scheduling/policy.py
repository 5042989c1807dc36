"""Scheduling policies and the one selection routine that the queue and the simulator share.

A policy splits a task's priority into a *static* part, fixed when the task is queued and stored
with it (so the queue can scan the ready set in static order), and a bounded *dynamic* bonus
computed at claim time from a :class:`SchedulerView`. :func:`choose` walks candidates in static
order, stops as soon as no later candidate can beat the best score (static + the bonus bound), and
returns the highest-scoring task that fits the free devices, with the devices it gets.

``small_first`` (the default) = base priority by type + model-size band (+30 under 30 GB, +20
under 70 GB, +10 under 100 GB) + critical tasks (SETUP_BASELINE +50, CALIBRATION_RUN +20) + unblock
(+2 per dependent, capped) ± dynamic: age (+1 per 5 min queued, capped), fairness (−3 per running
task of the same model, capped) and work stealing (+ for models lagging behind the others).
``fifo`` runs tasks in submission order; ``static`` pins each model to a fixed device group.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

import attrs

from invarlock_core.errors import UsageError
from invarlock_core.scheduling.tasks import Task, TaskType

__all__ = [
    "POLICIES",
    "Candidate",
    "Choice",
    "DeviceSlot",
    "FifoPolicy",
    "ModelProgress",
    "Policy",
    "SchedulerView",
    "SmallFirstPolicy",
    "StaticPolicy",
    "choose",
    "make_policy",
    "static_assignment",
]


@attrs.frozen
class Candidate:
    """A ready task as the selection routine sees it."""

    id: str
    type: TaskType
    model: str
    memory_gb: float
    required_gpus: int
    static_priority: float
    seq: int
    ready_since: float

    @property
    def per_device_gb(self) -> float:
        return self.memory_gb / self.required_gpus


@attrs.frozen
class DeviceSlot:
    """A device that is idle and unreserved, with the memory a task may use on it (GiB)."""

    id: str
    free_gb: float


@attrs.frozen
class ModelProgress:
    """Estimated work (seconds) of a model: all of it, and what is not yet completed."""

    total_seconds: float
    remaining_seconds: float

    @property
    def remaining_fraction(self) -> float:
        return self.remaining_seconds / self.total_seconds if self.total_seconds > 0 else 0.0


@attrs.frozen
class SchedulerView:
    """The dynamic state a policy may look at when scoring."""

    now: float
    running_by_model: Mapping[str, int] = attrs.field(factory=dict)
    progress: Mapping[str, ModelProgress] = attrs.field(factory=dict)
    oldest_ready: float | None = None
    """When the longest-waiting ready task became ready (bounds the age boost)."""
    lag: Mapping[str, float] = attrs.field(factory=dict)
    """Per model: remaining fraction minus the mean over models with work left (see :meth:`build`)."""

    @classmethod
    def build(
        cls,
        now: float,
        running_by_model: Mapping[str, int],
        progress: Mapping[str, ModelProgress],
        oldest_ready: float | None = None,
    ) -> SchedulerView:
        fractions = [p.remaining_fraction for p in progress.values() if p.remaining_seconds > 0]
        lag: dict[str, float] = {}
        if len(fractions) >= 2:
            mean = sum(fractions) / len(fractions)
            lag = {model: p.remaining_fraction - mean for model, p in progress.items()}
        return cls(now, running_by_model, progress, oldest_ready, lag)


@attrs.frozen
class Choice:
    """The selected task and the devices it runs on (the claiming device first)."""

    task_id: str
    devices: tuple[str, ...]
    score: float


class Policy(Protocol):
    """What :func:`choose` needs from a policy."""

    @property
    def name(self) -> str: ...

    def bonus_bound(self, view: SchedulerView, model: str) -> float:
        """An upper bound of :meth:`bonus` for any candidate of ``model`` (lets the scan stop early)."""
        ...

    def static_priority(self, task: Task, dependents: int, seq: int) -> float: ...

    def bonus(self, candidate: Candidate, view: SchedulerView) -> float: ...

    def allowed_devices(self, candidate: Candidate) -> frozenset[str] | None:
        """Devices this candidate may use (``None``: any)."""
        ...


def _size_boost(size_gb: float) -> int:
    if size_gb < 30:
        return 30
    if size_gb < 70:
        return 20
    if size_gb < 100:
        return 10
    return 0


_CRITICAL = {TaskType.SETUP_BASELINE: 50, TaskType.CALIBRATION_RUN: 20}


@attrs.frozen
class SmallFirstPolicy:
    """``small_first``: small models and short tasks first, with capped dynamic boosts."""

    unblock_per_dependent: float = 2.0
    unblock_cap: float = 20.0
    age_step_seconds: float = 300.0
    age_cap: float = 10.0
    fairness_per_running: float = 3.0
    fairness_cap: float = 15.0
    steal_weight: float = 100.0
    steal_cap: float = 30.0

    @property
    def name(self) -> str:
        return "small_first"

    def bonus_bound(self, view: SchedulerView, model: str) -> float:
        if view.oldest_ready is None:  # unknown: assume the longest wait
            age = self.age_cap
        else:
            waited = max(0.0, view.now - view.oldest_ready)
            age = min(math.floor(waited / self.age_step_seconds), self.age_cap)
        return age - self._fairness(model, view) + self._steal(model, view)

    def static_priority(self, task: Task, dependents: int, seq: int) -> float:
        unblock = min(self.unblock_per_dependent * dependents, self.unblock_cap)
        return float(
            task.base_priority
            + _size_boost(task.model_size_gb)
            + _CRITICAL.get(task.type, 0)
            + unblock
        )

    def bonus(self, candidate: Candidate, view: SchedulerView) -> float:
        waited = max(0.0, view.now - candidate.ready_since)
        age = min(math.floor(waited / self.age_step_seconds), self.age_cap)
        return age - self._fairness(candidate.model, view) + self._steal(candidate.model, view)

    def _fairness(self, model: str, view: SchedulerView) -> float:
        running = view.running_by_model.get(model, 0)
        return min(self.fairness_per_running * running, self.fairness_cap)

    def _steal(self, model: str, view: SchedulerView) -> float:
        """Work stealing: models with more of their work left than the average get a boost."""
        lag = view.lag.get(model, 0.0)
        return max(0.0, min(self.steal_cap, round(self.steal_weight * lag)))

    def allowed_devices(self, candidate: Candidate) -> frozenset[str] | None:
        return None


@attrs.frozen
class FifoPolicy:
    """Submission order; memory-fit still applies."""

    @property
    def name(self) -> str:
        return "fifo"

    def bonus_bound(self, view: SchedulerView, model: str) -> float:
        return 0.0

    def static_priority(self, task: Task, dependents: int, seq: int) -> float:
        return float(-seq)

    def bonus(self, candidate: Candidate, view: SchedulerView) -> float:
        return 0.0

    def allowed_devices(self, candidate: Candidate) -> frozenset[str] | None:
        return None


@attrs.frozen
class StaticPolicy(FifoPolicy):
    """Each model runs only on its own device group (submission order inside a group)."""

    assignment: Mapping[str, frozenset[str]] = attrs.field(factory=dict)

    @property
    def name(self) -> str:
        return "static"

    def allowed_devices(self, candidate: Candidate) -> frozenset[str] | None:
        return self.assignment.get(candidate.model)


def static_assignment(tasks: Sequence[Task], devices: Sequence[str]) -> dict[str, frozenset[str]]:
    """Pin models to device groups: largest work first, each on the least-loaded contiguous group
    wide enough for its widest task (groups overlap when there are more models than devices)."""
    if not devices:
        raise UsageError("a static assignment needs at least one device")
    work: dict[str, float] = {}
    width: dict[str, int] = {}
    for task in tasks:
        work[task.model] = work.get(task.model, 0.0) + task.estimated_seconds * task.required_gpus
        width[task.model] = max(width.get(task.model, 1), task.required_gpus)
    load = [0.0] * len(devices)
    assignment: dict[str, frozenset[str]] = {}
    for model in sorted(work, key=lambda m: (-work[m], m)):
        need = min(width[model], len(devices))
        starts = range(0, len(devices) - need + 1)
        best = min(starts, key=lambda s: (max(load[s : s + need]), s))
        # Give a model more devices when it has more than its share of the total work.
        share = work[model] / max(sum(work.values()), 1e-9)
        span = max(need, min(len(devices) - best, round(share * len(devices))))
        span = need * max(1, span // need)
        group = range(best, best + span)
        for index in group:
            load[index] += work[model] / span
        assignment[model] = frozenset(devices[index] for index in group)
    return assignment


POLICIES = ("small_first", "fifo", "static")


def make_policy(
    name: str, tasks: Sequence[Task] = (), devices: Sequence[str] = ()
) -> SmallFirstPolicy | FifoPolicy | StaticPolicy:
    """The policy called ``name`` (``static`` needs the tasks and devices to plan its groups)."""
    if name == "small_first":
        return SmallFirstPolicy()
    if name == "fifo":
        return FifoPolicy()
    if name == "static":
        return StaticPolicy(static_assignment(tasks, devices))
    raise UsageError(f"unknown scheduling policy {name!r}; valid: {', '.join(POLICIES)}")


def choose(
    candidates: Iterable[Candidate],
    own: DeviceSlot,
    free: Sequence[DeviceSlot],
    view: SchedulerView,
    policy: Policy,
    prune: Callable[[str], None] | None = None,
) -> Choice | None:
    """The best candidate that fits, scanning in descending static priority.

    ``own`` is the claiming worker's device (always part of the allocation); ``free`` are the other
    idle, unreserved devices. A candidate fits when it may use ``own`` and ``required_gpus − 1`` more
    devices, each with at least its per-device memory free. Ties keep the earlier candidate.
    ``prune(model)`` is called when no later candidate of ``model`` can win, so that a source that
    streams candidates per model may stop reading that model.
    """
    others = sorted(free, key=lambda d: (-d.free_gb, d.id))
    best: Choice | None = None
    bounds = {model: policy.bonus_bound(view, model) for model in (*view.progress, "")}
    overall = max(bounds.values())
    for candidate in candidates:
        if best is not None:
            if candidate.static_priority + overall <= best.score:
                break
            if candidate.model not in bounds:
                bounds[candidate.model] = policy.bonus_bound(view, candidate.model)
            if candidate.static_priority + bounds[candidate.model] <= best.score:
                if prune is not None:
                    prune(candidate.model)
                continue
        allowed = policy.allowed_devices(candidate)
        if allowed is not None and own.id not in allowed:
            continue
        need = candidate.per_device_gb
        if need > own.free_gb + 1e-9:
            continue
        extra: list[str] = []
        if candidate.required_gpus > 1:
            for device in others:
                if len(extra) == candidate.required_gpus - 1:
                    break
                if device.id == own.id or device.free_gb + 1e-9 < need:
                    continue
                if allowed is not None and device.id not in allowed:
                    continue
                extra.append(device.id)
            if len(extra) < candidate.required_gpus - 1:
                continue
        score = candidate.static_priority + policy.bonus(candidate, view)
        if best is None or score > best.score:
            best = Choice(candidate.id, (own.id, *extra), score)
    return best
