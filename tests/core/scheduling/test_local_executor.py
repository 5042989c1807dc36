"""The local executor end to end: real worker processes running real subprocess tasks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
from sched_helpers import FAST, poll, script_task

from invarlock_core.errors import UsageError
from invarlock_core.scheduling import Task, TaskCommand, TaskGraph, TaskQueue, run_graph
from invarlock_core.scheduling.local import active_runner


def _records(out: Path) -> dict[str, object]:
    with TaskQueue(out) as queue:
        return {record.id: record for record in queue.records()}


def test_diamond_graph_runs_in_dependency_order_on_pinned_devices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPU_ID_LIST", "3,5")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    graph = TaskGraph(
        (
            script_task("a"),
            script_task("b", deps=["a"]),
            script_task("c", deps=["a"]),
            script_task("wide", deps=["b", "c"], required_gpus=2),
            Task(
                "entry",
                command=TaskCommand(entry_point="builtins:print", params={"hello": "world"}),
            ),
        )
    )
    summary = run_graph(tmp_path, graph, knobs=FAST)
    assert summary.exit_code == 0
    assert summary.states["completed"] == 5
    with TaskQueue(tmp_path) as queue:
        order = [e[2] for e in queue.events("complete") if e[2] != "entry"]
        claims = {event[2]: event[0] for event in queue.events("claim")}
        completes = {event[2]: event[0] for event in queue.events("complete")}
    assert order[0] == "a"
    assert order[-1] == "wide"
    for task in graph:
        for dep in task.deps:
            assert completes[dep] < claims[task.id]
    # The two-device task saw both devices; single-device tasks saw one of the pool.
    assert (tmp_path / "markers" / "wide").read_text().split()[1] in {"3,5", "5,3"}
    assert (tmp_path / "markers" / "a").read_text().split()[1] in {"3", "5"}
    assert (tmp_path / "logs" / "tasks" / "a.log").read_text().startswith("=== attempt 1 of a")
    assert "{'hello': 'world'}" in (tmp_path / "logs" / "tasks" / "entry.log").read_text()
    progress = json.loads((tmp_path / "state" / "progress.json").read_text())
    assert progress["finished"] is True
    assert progress["states"]["completed"] == 5
    with pytest.raises(UsageError, match="already holds a queue"):
        run_graph(tmp_path, graph, knobs=FAST)


@pytest.mark.slow
def test_failure_classes_are_handled_per_class(tmp_path: Path) -> None:
    knobs = attrs.evolve(FAST, task_timeouts={"CLEANUP": 1.0})
    from invarlock_core.scheduling import TaskType

    graph = TaskGraph(
        (
            script_task("oom", "oom", "8", batch_size=32, seq_len=512),
            script_task("crash", "crash"),
            script_task("permanent", "permanent"),
            script_task("blocked", deps=["permanent"]),
            script_task("blocked_too", deps=["blocked"]),
            script_task("hang", "hang", type=TaskType.CLEANUP, max_retries=1),
            Task("missing", command=TaskCommand(entry_point="no_such_module_anywhere:run")),
        )
    )
    summary = run_graph(tmp_path, graph, knobs=knobs)
    assert summary.exit_code == 1
    records = _records(tmp_path)
    oom = records["oom"]
    assert oom.state == "completed"
    assert oom.attempts == 3
    assert oom.batch_size == 8
    assert oom.seq_len == 128
    assert (tmp_path / "markers" / "oom").read_text().split(" ")[2] == "8"
    crash = records["crash"]
    assert crash.state == "failed"
    assert crash.failure_class == "unknown"
    assert crash.attempts == 3
    assert "RuntimeError: something broke" in crash.error
    permanent = records["permanent"]
    assert permanent.state == "failed"
    assert permanent.failure_class == "permanent"
    assert permanent.attempts == 1
    for name in ("blocked", "blocked_too"):
        assert records[name].state == "failed"
        assert records[name].failure_class == "dependency"
        assert records[name].attempts == 0
    missing = records["missing"]
    assert missing.state == "failed"
    assert missing.failure_class == "permanent"
    assert missing.attempts == 1
    hang = records["hang"]
    assert hang.state == "failed"
    assert hang.failure_class == "transient"
    assert hang.attempts == 2
    # The hung process was killed with its group both times.
    for attempt in (1, 2):
        pid = int((tmp_path / "started" / f"hang.{attempt}").read_text())
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )


def _cli(out: Path, *args: str) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        INVARLOCK_LOAD_PLUGINS="",
        WORKER_IDLE_SLEEP="0.02",
        WORKER_HEARTBEAT_INTERVAL="0.2",
        NUM_GPUS="2",
        RETRY_BACKOFF_BASE="0.01",
        RETRY_BACKOFF_MAX="0.05",
    )
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env.pop("GPU_ID_LIST", None)
    return subprocess.Popen(
        [sys.executable, "-m", "invarlock_core.cli", "schedule", "run", str(out), *args],
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.slow
def test_kill_minus_nine_of_the_runner_then_resume_runs_every_task_exactly_once(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    tasks = [script_task(f"pre{i}") for i in range(4)]
    tasks.append(script_task("gate", "gate", deps=["pre0"]))
    tasks += [script_task(f"post{i}", deps=["gate"]) for i in range(4)]
    graph_file = TaskGraph(tuple(tasks)).save(tmp_path / "graph.json")
    runner = _cli(out, "--graph", str(graph_file))
    poll(lambda: (out / "started" / "gate.1").exists(), what="the gate task to start")
    gate_pid = int((out / "started" / "gate.1").read_text())
    assert active_runner(out) == runner.pid
    os.killpg(runner.pid, signal.SIGKILL)
    runner.wait()
    # The orphaned task dies with its worker (PR_SET_PDEATHSIG), so it cannot finish later.
    poll(
        lambda: not Path(f"/proc/{gate_pid}").exists(), seconds=10, what="the orphaned task to die"
    )
    assert active_runner(out) is None
    interrupted = {name for name, record in _records(out).items() if record.state == "running"}
    assert "gate" in interrupted
    assert not (out / "markers" / "gate").exists()
    (out / "release").touch()
    resumed = _cli(out, "--resume")
    output, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, output.decode()
    records = _records(out)
    assert all(record.state == "completed" for record in records.values())
    assert sorted(path.name for path in (out / "markers").iterdir()) == sorted(t.id for t in tasks)
    # Every marker was written once (O_EXCL); only tasks interrupted by the kill started twice.
    starts = (out / "runs.log").read_text().split("\n")
    started_twice = {line.split()[0] for line in starts if line and line.split()[1] != "1"}
    assert "gate" in started_twice
    assert started_twice <= interrupted
    assert records["gate"].attempts == 2
    assert records["gate"].failures == 0


@pytest.mark.slow
def test_a_worker_killed_mid_task_is_replaced_and_its_task_retried(tmp_path: Path) -> None:
    out = tmp_path / "run"
    graph_file = TaskGraph(
        (script_task("victim", "hold-first"), script_task("after", deps=["victim"]))
    ).save(tmp_path / "graph.json")
    runner = _cli(out, "--graph", str(graph_file))
    poll(lambda: (out / "started" / "victim.1").exists(), what="the victim task to start")
    with TaskQueue(out) as queue:
        owner = next(w for w in queue.workers() if w.task_id == "victim")
    assert owner.pid is not None
    os.kill(owner.pid, signal.SIGKILL)
    output, _ = runner.communicate(timeout=120)
    assert runner.returncode == 0, output.decode()
    records = _records(out)
    victim = records["victim"]
    assert victim.state == "completed"
    assert victim.attempts == 2
    assert victim.failures == 1
    assert victim.failure_class == "unknown"
    assert records["after"].state == "completed"
    with TaskQueue(out) as queue:
        assert [event[2] for event in queue.events("reclaimed")] == ["victim"]
        assert any(w.state == "dead" for w in queue.workers())


def test_leftover_task_groups_are_killed_only_when_the_pid_is_still_that_task() -> None:
    from invarlock_core.scheduling.launch import kill_task_group

    env = dict(os.environ, INVARLOCK_TASK_ID="leftover")
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"], env=env, start_new_session=True
    )
    try:
        poll(
            lambda: b"INVARLOCK_TASK_ID=leftover" in Path(f"/proc/{proc.pid}/environ").read_bytes(),
            what="the child to exec",
        )
        assert not kill_task_group(proc.pid, "another-task")
        assert proc.poll() is None
        assert kill_task_group(proc.pid, "leftover")
        assert proc.wait(timeout=30) == -signal.SIGTERM
        assert not kill_task_group(proc.pid, "leftover")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
