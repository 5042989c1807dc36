"""Warm task start: entry-point tasks forked from a worker that preloaded their imports."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest
from sched_helpers import FAST

from invarlock_core.scheduling import Task, TaskCommand, TaskGraph, TaskQueue, run_graph
from invarlock_core.scheduling.warm_start import PRELOAD_ENV, WARM_ENV, wants_warm_start

HERE = Path(__file__).resolve().parent


def task(task_id: str, function: str, *, warm: bool, **fields: object) -> Task:
    env = {WARM_ENV: "1", PRELOAD_ENV: "warm_tasks"} if warm else {}
    command = TaskCommand(
        entry_point=f"warm_tasks:{function}",
        params={"code": 3, "id": task_id},
        env={**env, "WARM_TEST_MARKER": task_id},
    )
    return Task(id=task_id, command=command, **fields)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(HERE))


def marker(out: Path, task_id: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((out / "markers" / f"{task_id}.json").read_text())
    return data


def test_warm_start_only_for_entry_points_that_ask() -> None:
    assert wants_warm_start({WARM_ENV: "1"}, "m:f")
    assert not wants_warm_start({WARM_ENV: "1"}, None)
    assert not wants_warm_start({}, "m:f")


def test_warm_tasks_run_in_a_fork_with_their_own_session_env_and_params(tmp_path: Path) -> None:
    graph = TaskGraph(
        (
            task("warm_a", "record", warm=True),
            task("warm_b", "record", warm=True, deps=("warm_a",)),
            task("cold", "record", warm=False),
        )
    )
    knobs = attrs.evolve(FAST, num_gpus=1)
    summary = run_graph(tmp_path, graph, knobs=knobs)
    assert summary.states["completed"] == 3
    for task_id in ("warm_a", "warm_b"):
        facts = marker(tmp_path, task_id)
        assert facts["imported_in"] != facts["pid"]  # the module came preloaded from the worker
        assert facts["session_leader"] is True
        assert facts["marker_env"] == task_id
        assert facts["params"] == {"code": 3, "id": task_id}
        assert facts["cwd"] == str(tmp_path)
    assert marker(tmp_path, "warm_a")["imported_in"] == marker(tmp_path, "warm_b")["imported_in"]
    cold = marker(tmp_path, "cold")
    assert cold["imported_in"] == cold["pid"]
    log = (tmp_path / "logs" / "tasks" / "warm_a.log").read_text()
    assert "recorded warm_a" in log


def test_warm_task_failures_and_timeouts_behave_like_subprocesses(tmp_path: Path) -> None:
    graph = TaskGraph(
        (
            task("fails", "fail", warm=True, max_retries=0),
            task("hangs", "hang", warm=True, max_retries=0),
        )
    )
    knobs = attrs.evolve(FAST, num_gpus=1, task_timeouts={"GENERIC": 2.0})
    summary = run_graph(tmp_path, graph, knobs=knobs)
    assert summary.states["failed"] == 2
    with TaskQueue(tmp_path) as queue:
        records = {r.id: r for r in queue.records()}
    assert records["fails"].error is not None
    assert "exit status 3" in records["fails"].error
    assert records["hangs"].failure_class == "transient"
    log = (tmp_path / "logs" / "tasks" / "hangs.log").read_text()
    assert "timed out after 2 s: process group killed" in log
