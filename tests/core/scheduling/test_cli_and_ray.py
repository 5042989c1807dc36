"""``invarlock schedule ...`` and the optional Ray executor."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from sched_helpers import FAST, script_task

from invarlock_core.cli import main
from invarlock_core.scheduling import Task, TaskCommand, TaskGraph, TaskQueue, run_graph
from invarlock_core.scheduling.worker import SHUTDOWN_FILE

DOCS = Path(__file__).resolve().parents[3] / "docs" / "reference"


@pytest.fixture(autouse=True)
def _only_core_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVARLOCK_LOAD_PLUGINS", "")


def test_simulate_prints_makespan_bound_ratio_and_utilisation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        main(
            [
                "schedule",
                "simulate",
                "--suite-shape",
                "full",
                "--gpus",
                "8",
                "--gpu-memory",
                "80",
                "--json",
            ]
        )
        == 0
    )
    row = json.loads(capsys.readouterr().out)
    assert row["policy"] == "small_first"
    assert row["devices"] == 8
    assert row["tasks"] == 474
    assert row["ratio"] == pytest.approx(
        row["makespan_seconds"] / row["lower_bound_seconds"], rel=1e-3
    )
    assert 0 < row["utilisation"] <= 1
    assert (
        main(["schedule", "simulate", "--suite-shape", "subset", "--gpus", "2", "--policy", "all"])
        == 0
    )
    text = capsys.readouterr().out
    assert all(name in text for name in ("small_first", "fifo", "static", "lower bound"))


def test_bad_simulate_input_is_one_line_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schedule", "simulate", "--gpus", "1", "--gpu-memory", "80"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: task ")
    assert "needs 2 devices" in err
    assert err.count("\n") == 1
    assert main(["schedule", "simulate", "--suite-shape", "nope"]) == 2
    assert main(["schedule", "simulate", "--gpu-memory", "-3"]) == 2


def test_graph_run_status_and_stop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (
        main(
            [
                "schedule",
                "graph",
                "--suite-shape",
                "subset",
                "--output",
                str(tmp_path / "suite.json"),
            ]
        )
        == 0
    )
    assert len(TaskGraph.load(tmp_path / "suite.json")) == 79
    graph = TaskGraph((script_task("one"), script_task("two", deps=["one"]))).save(
        tmp_path / "g.json"
    )
    for name, value in {"NUM_GPUS": "1", "WORKER_IDLE_SLEEP": "0.02"}.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(["schedule", "run", str(out), "--graph", str(graph), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["states"]["completed"] == 2
    assert summary["exit_code"] == 0
    assert main(["schedule", "status", str(out), "--tasks"]) == 0
    text = capsys.readouterr().out
    assert "2 tasks (2 completed)" in text
    assert "completed one" in text
    assert main(["schedule", "status", str(out), "--json", "--tasks"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["finished"]
    assert [t["id"] for t in status["tasks"]] == ["one", "two"]
    # Resuming a finished run does nothing and still succeeds.
    assert main(["schedule", "run", str(out), "--resume"]) == 0
    assert main(["schedule", "stop", str(out)]) == 0
    assert (out / SHUTDOWN_FILE).exists()
    assert main(["schedule", "status", str(tmp_path / "nothing")]) == 2
    assert main(["schedule", "run", str(out), "--graph", str(graph)]) == 2
    assert main(["schedule", "run", str(out), "--retry-failed", "--graph", str(graph)]) == 2


def test_a_stop_request_stops_the_run_after_the_current_task(tmp_path: Path) -> None:
    # The executor removes a stale SHUTDOWN file at start; here the first task asks to stop.
    shutdown = tmp_path / SHUTDOWN_FILE
    touch = TaskCommand(argv=(sys.executable, "-c", f"open({str(shutdown)!r}, 'w').close()"))
    graph = TaskGraph((Task("first", command=touch), script_task("second", deps=["first"])))
    summary = run_graph(tmp_path, graph, knobs=FAST)
    assert summary.stopped
    assert summary.reason == "shutdown requested"
    assert summary.exit_code == 3
    with TaskQueue(tmp_path) as queue:
        assert queue.state_counts()["completed"] == 1
        assert queue.state_counts()["ready"] == 1


def test_the_knob_reference_lists_every_knob_with_its_default() -> None:
    from invarlock_core.scheduling.knobs import KNOB_DOCS

    text = (DOCS / "scheduling-knobs.md").read_text()
    for name in KNOB_DOCS:
        assert f"| `{name}` |" in text
    for name, default in [
        ("GPU_RESERVATION_TTL", "60"),
        ("WORKER_TIMEOUT", "2700"),
        ("CUDA_MEMORY_FRACTION", "0.92"),
    ]:
        assert f"| `{name}` | {default} |" in text


def test_every_schedule_command_is_documented() -> None:
    text = "".join(path.read_text() for path in DOCS.glob("*.md"))
    for command in ("simulate", "graph", "run", "status", "stop"):
        assert f"invarlock schedule {command}" in text


@pytest.mark.slow
def test_ray_executor_places_multi_gpu_tasks_on_fake_gpus(tmp_path: Path) -> None:
    ray = pytest.importorskip(
        "ray", reason="ray is an optional extra (pip install 'invarlock-core[ray]')"
    )
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    try:
        graph = TaskGraph(
            (
                script_task("single_a"),
                script_task("single_b"),
                script_task("pair", deps=["single_a"], required_gpus=2),
                script_task("boom", "permanent"),
            )
        )
        summary = run_graph(tmp_path, graph, executor="ray", knobs=FAST)
    finally:
        ray.shutdown()
    assert summary.states["completed"] == 3
    assert summary.states["failed"] == 1
    seen = (tmp_path / "markers" / "pair").read_text().split(" ")[1]
    assert sorted(seen.split(",")) == ["0", "1"]
    assert (tmp_path / "markers" / "single_b").read_text().split(" ")[1] in {"0", "1"}
    with TaskQueue(tmp_path) as queue:
        records = {r.id: r for r in queue.records()}
        assert len(queue.devices) == 2
        assert all(d.kind == "cuda" for d in queue.devices)
    assert records["boom"].failure_class == "permanent"
    assert records["boom"].attempts == 1
    assert len(records["pair"].devices) == 2


def test_heartbeats_must_come_more_often_than_reservations_expire(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    graph = TaskGraph((script_task("one"),)).save(tmp_path / "g.json")
    monkeypatch.setenv("WORKER_HEARTBEAT_INTERVAL", "90")
    assert main(["schedule", "run", str(tmp_path / "run"), "--graph", str(graph)]) == 2
    assert "GPU_RESERVATION_TTL" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    monkeypatch.setenv("WORKER_HEARTBEAT_INTERVAL", "1")
    assert (
        main(
            ["schedule", "run", str(tmp_path / "run"), "--graph", str(graph), "--executor", "nope"]
        )
        == 2
    )
    assert "unknown executor 'nope'" in capsys.readouterr().err
