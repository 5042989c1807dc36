"""The durable SQLite queue: claims, reservations, lifecycle, and concurrency under load."""

from __future__ import annotations

import json
import multiprocessing
import random
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invarlock_core.errors import InputError, UsageError
from invarlock_core.scheduling import Device, SchedulingKnobs, Task, TaskGraph, TaskQueue
from invarlock_core.scheduling.failures import FailureClass, RetryDecision
from invarlock_core.scheduling.loadtest import drain_instantly, random_graph

CPU2 = [Device("cpu0", "cpu", 80.0), Device("cpu1", "cpu", 80.0)]


def _queue(tmp: Path, tasks: list[Task], devices: list[Device] = CPU2, **kw: object) -> TaskQueue:
    return TaskQueue.create(tmp, TaskGraph(tuple(tasks)), devices, **kw)  # type: ignore[arg-type]


def test_claims_follow_dependencies_and_reserve_devices(tmp_path: Path) -> None:
    q = _queue(
        tmp_path,
        [Task("wide", required_gpus=2, memory_gb=100.0), Task("a"), Task("b", deps=("a",))],
        policy="fifo",
    )
    q.register_worker("w0", "cpu0", None)
    q.register_worker("w1", "cpu1", None)
    first = q.claim("w0", "cpu0")
    assert first is not None
    assert first.task.id == "wide"
    assert {d.id for d in first.devices} == {"cpu0", "cpu1"}
    assert q.claim("w1", "cpu1") is None  # its device is reserved by the two-device task
    assert q.complete("wide", "w0", first.attempt)
    second = q.claim("w1", "cpu1")
    assert second is not None
    assert second.task.id == "a"
    assert q.claim("w0", "cpu0") is None  # b waits for a
    assert not q.complete("a", "w0", second.attempt)  # not w0's claim
    assert q.complete("a", "w1", second.attempt)
    third = q.claim("w0", "cpu0")
    assert third is not None
    assert third.task.id == "b"
    assert q.state_counts()["running"] == 1


def test_memory_fit_skips_tasks_that_do_not_fit_the_free_memory(tmp_path: Path) -> None:
    q = _queue(
        tmp_path,
        [
            Task("mixtral.CREATE_EDITS_BATCH", memory_gb=92.0, model_size_gb=90, required_gpus=2),
            Task("yi.EVALUATE_EDIT", memory_gb=72.0, model_size_gb=68),
            Task("qwen14.CALIBRATION_RUN", memory_gb=24.0, model_size_gb=28),
        ],
    )
    q.register_worker("w", "cpu0", None)
    claim = q.claim("w", "cpu0", free_gb=28.0)
    assert claim is not None
    assert claim.task.id == "qwen14.CALIBRATION_RUN"


def test_retry_reclaim_cancel_and_expiry(tmp_path: Path) -> None:
    knobs = SchedulingKnobs(gpu_reservation_ttl=0.0)
    q = _queue(
        tmp_path,
        [Task("a"), Task("child", deps=("a",)), Task("grandchild", deps=("child",))],
        knobs=knobs,
    )
    q = TaskQueue(tmp_path, knobs=knobs)
    q.register_worker("w", "cpu0", None)
    claim = q.claim("w", "cpu0")
    assert claim is not None
    assert q.fail("a", "w", 1, FailureClass.OOM, "oom", RetryDecision(True, 0.0, 16, 256))
    again = q.claim("w", "cpu0")
    assert again is not None
    assert again.attempt == 2
    assert again.failures == 1
    assert again.task.batch_size == 16
    assert again.task.seq_len == 256
    # The reservation TTL is 0: another worker's claim expires it (a dead holder frees its device).
    q.register_worker("w2", "cpu1", None)
    time.sleep(0.001)
    assert q.claim("w2", "cpu1") is None  # nothing else is ready
    assert q.events("reservation_expired")
    assert q.reclaim("a", "w", 2, failure=None, error="runner stopped")
    assert q.state_counts()["ready"] == 1
    third = q.claim("w2", "cpu1")
    assert third is not None
    assert third.attempt == 3
    assert q.fail("a", "w2", 3, FailureClass.PERMANENT, "ImportError", RetryDecision(False))
    assert q.cancel_blocked(grace_seconds=3600) == []
    assert sorted(q.cancel_blocked(grace_seconds=0)) == ["child", "grandchild"]
    records = {r.id: r for r in q.records()}
    assert records["grandchild"].error == "dependency child failed"
    assert q.reset_failed() == 3
    assert q.state_counts()["ready"] == 1
    progress = json.loads(json.dumps(q.write_progress().to_json()))
    assert progress["total"] == 3
    assert (tmp_path / "state" / "progress.json").is_file()


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="has no scheduler queue"):
        TaskQueue(tmp_path)
    with pytest.raises(UsageError, match="needs 3 devices but the pool has 2"):
        _queue(tmp_path, [Task("x", required_gpus=3)])
    _queue(tmp_path, [Task("x")])
    with pytest.raises(UsageError, match="already holds a queue"):
        _queue(tmp_path, [Task("x")])


@st.composite
def dags(draw: st.DrawFn, max_tasks: int = 25) -> list[Task]:
    n = draw(st.integers(1, max_tasks))
    tasks = []
    for i in range(n):
        deps = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        gpus = draw(st.sampled_from([1, 1, 1, 2]))
        tasks.append(
            Task(
                f"t{i}",
                deps=tuple(f"t{d}" for d in sorted(deps)),
                required_gpus=gpus,
                model=f"m{i % 3}",
            )
        )
    return tasks


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tasks=dags(),
    seed=st.integers(0, 2**16),
    policy=st.sampled_from(["small_first", "fifo", "static"]),
)
def test_interleaved_workers_respect_dependencies_and_never_double_claim(
    tmp_path_factory: pytest.TempPathFactory, tasks: list[Task], seed: int, policy: str
) -> None:
    out = tmp_path_factory.mktemp("q")
    devices = [Device(f"cpu{i}", "cpu", 80.0) for i in range(3)]
    TaskQueue.create(out, TaskGraph(tuple(tasks)), devices, policy=policy).close()
    workers = {f"w{i}": TaskQueue(out) for i in range(3)}
    for i, (name, q) in enumerate(workers.items()):
        q.register_worker(name, f"cpu{i}", None)
    rng = random.Random(seed)
    held: dict[str, tuple[str, int]] = {}
    completed: set[str] = set()
    deps = {t.id: set(t.deps) for t in tasks}
    for _ in range(20 * len(tasks)):
        name = rng.choice(sorted(workers))
        q = workers[name]
        if name in held:
            task_id, attempt = held.pop(name)
            if rng.random() < 0.2:
                q.fail(task_id, name, attempt, FailureClass.TRANSIENT, "flaky", RetryDecision(True))
            else:
                assert q.complete(task_id, name, attempt)
                completed.add(task_id)
        else:
            device = f"cpu{sorted(workers).index(name)}"
            claim = q.claim(name, device)
            if claim is not None:
                assert deps[claim.task.id] <= completed
                assert claim.task.id not in completed
                assert claim.task.id not in {t for t, _ in held.values()}
                held[name] = (claim.task.id, claim.attempt)
        if len(completed) == len(tasks):
            break
    assert len(completed) == len(tasks)
    for q in workers.values():
        q.close()


def _drain(out: str, worker: str, device: str, log: str) -> None:
    Path(log).write_text("\n".join(drain_instantly(out, worker, device)))


@pytest.mark.slow
def test_eight_processes_drain_ten_thousand_tasks_without_double_or_lost_claims(
    tmp_path: Path,
) -> None:
    graph = random_graph(10_000, seed=7)
    devices = [Device(f"cpu{i}", "cpu", 80.0) for i in range(8)]
    TaskQueue.create(tmp_path, graph, devices).close()
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(
            target=_drain, args=(str(tmp_path), f"w{i}", f"cpu{i}", str(tmp_path / f"w{i}.log"))
        )
        for i in range(8)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=300)
        assert proc.exitcode == 0
    claimed = [
        line for i in range(8) for line in (tmp_path / f"w{i}.log").read_text().split("\n") if line
    ]
    assert len(claimed) == len(set(claimed)) == 10_000
    with TaskQueue(tmp_path) as q:
        assert q.state_counts()["completed"] == 10_000
        claim_at = {e[2]: e[0] for e in q.events("claim")}
        done_at = {e[2]: e[0] for e in q.events("complete")}
    for task in graph:
        for dep in task.deps:
            assert done_at[dep] < claim_at[task.id]


def test_a_measured_model_profile_replans_tasks_that_have_not_started(tmp_path: Path) -> None:
    from invarlock_core.scheduling import MemoryPlanner, ModelProfile, TaskType

    planner = MemoryPlanner(device_memory_gb=80)
    guess = ModelProfile("m", 14.0)
    tasks = [
        planner.plan(Task("m.setup", type=TaskType.SETUP_BASELINE, model="m"), guess),
        planner.plan(
            Task("m.eval", type=TaskType.EVALUATE_EDIT, model="m", deps=("m.setup",)), guess
        ),
    ]
    q = _queue(tmp_path, tasks)
    q.register_worker("w", "cpu0", None)
    claim = q.claim("w", "cpu0")
    assert claim is not None
    assert claim.task.id == "m.setup"
    measured = ModelProfile("m", 90.0, is_moe=True)
    assert q.refresh_memory(measured, planner) == 1  # the running setup task is left alone
    replanned = q.task("m.eval")
    assert replanned.required_gpus == 2
    assert replanned.model_size_gb == 90.0
    assert replanned.memory_gb > 90
    with pytest.raises(UsageError, match="now needs 3 devices"):
        q.refresh_memory(ModelProfile("m", 150.0), planner)
