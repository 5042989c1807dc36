"""Task graphs, suite generation and the simulator."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invarlock_core.errors import InputError, SchemaError, UsageError
from invarlock_core.scheduling import (
    MemoryPlanner,
    ScenarioCounts,
    Task,
    TaskCommand,
    TaskGraph,
    TaskType,
    build_suite_graph,
    simulate,
)
from invarlock_core.scheduling.suite_graph import build_model_graph, suite_shape


def _types(tasks: list[Task]) -> dict[TaskType, int]:
    counts: dict[TaskType, int] = {}
    for task in tasks:
        counts[task.type] = counts.get(task.type, 0) + 1
    return counts


def test_per_edit_and_batch_paths_have_the_seed_task_counts() -> None:
    profile = suite_shape("subset").models[0]
    planner = MemoryPlanner(device_memory_gb=80)
    per_edit = build_model_graph(profile, ScenarioCounts(), planner)
    counts = _types(per_edit)
    assert counts[TaskType.SETUP_BASELINE] == 1
    assert counts[TaskType.CALIBRATION_RUN] == 5
    assert counts[TaskType.CREATE_EDIT] == 8
    assert counts[TaskType.EVALUATE_EDIT] == 4 * 3 + 4 * 2
    assert counts[TaskType.CREATE_ERROR] == counts[TaskType.EVALUATE_ERROR] == 12
    assert counts[TaskType.CLEANUP] == 8 + 12
    legacy = ScenarioCounts(
        error_types=(
            "nan_injection",
            "inf_injection",
            "extreme_quant",
            "scale_explosion",
            "weight_tying_break",
        ),
        batch_edits="true",
        cleanup=False,
    )
    assert len(build_model_graph(profile, legacy, planner)) == 38  # the seed's batch path
    assert (
        len(
            build_model_graph(
                profile,
                ScenarioCounts(error_types=legacy.error_types, cleanup=False, batch_edits="false"),
                planner,
            )
        )
        == 45
    )
    # auto: MoE and large models never batch, even without cleanup.
    mixtral = next(p for p in suite_shape("full").models if p.is_moe)
    auto = build_model_graph(mixtral, ScenarioCounts(cleanup=False), planner)
    assert TaskType.CREATE_EDITS_BATCH not in _types(auto)


def test_dependencies_follow_the_seed_graph() -> None:
    graph = build_suite_graph("subset", MemoryPlanner())
    evaluate = graph["mistral-7b.EVALUATE_EDIT.quant_rtn_clean.run_1"]
    assert set(evaluate.deps) == {
        "mistral-7b.CREATE_EDIT.quant_rtn_clean",
        "mistral-7b.GENERATE_PRESET",
    }
    assert set(graph["mistral-7b.EVALUATE_ERROR.nan_injection"].deps) == {
        "mistral-7b.CREATE_ERROR.nan_injection",
        "mistral-7b.GENERATE_PRESET",
    }
    assert graph["mistral-7b.CREATE_ERROR.nan_injection"].deps == ("mistral-7b.SETUP_BASELINE",)
    assert len(graph["mistral-7b.GENERATE_PRESET"].deps) == 5
    assert graph.topological_order()[0] == "mistral-7b.SETUP_BASELINE"


def test_graph_validation_and_json_round_trip(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cycle"):
        TaskGraph((Task("a", deps=("b",)), Task("b", deps=("a",))))
    with pytest.raises(UsageError, match="unknown task"):
        TaskGraph((Task("a", deps=("zzz",)),))
    with pytest.raises(UsageError, match="appears twice"):
        TaskGraph((Task("a"), Task("a")))
    with pytest.raises(UsageError, match="path separator"):
        Task("../escape")
    with pytest.raises(UsageError, match="exactly one"):
        TaskCommand()
    graph = TaskGraph(
        (
            Task("a", command=TaskCommand(entry_point="pkg.mod:run", params={"x": [1, 2]})),
            Task("b", deps=("a",), type=TaskType.EVALUATE_EDIT, outputs=("out/b.json",)),
        ),
        name="g",
    )
    path = graph.save(tmp_path / "g.json")
    assert TaskGraph.load(path) == graph
    data = json.loads(path.read_text())
    data["tasks"][0]["required_gpus"] = 0
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(SchemaError, match="required_gpus"):
        TaskGraph.load(tmp_path / "bad.json")
    with pytest.raises(InputError, match="does not exist"):
        TaskGraph.load(tmp_path / "missing.json")


def test_small_first_meets_the_target_on_eight_gpus_and_beats_static() -> None:
    for memory in (80, 180):
        graph = build_suite_graph("full", MemoryPlanner(device_memory_gb=memory))
        small = simulate(graph, devices=8, device_memory_gb=memory, policy="small_first")
        static = simulate(graph, devices=8, device_memory_gb=memory, policy="static")
        assert small.ratio <= 1.10
        assert small.makespan_seconds < static.makespan_seconds
        assert 0 < small.utilisation <= 1


def test_infeasible_configurations_are_usage_errors() -> None:
    graph = build_suite_graph("full", MemoryPlanner(device_memory_gb=80))
    with pytest.raises(UsageError, match="needs 2 devices but only 1"):
        simulate(graph, devices=1, device_memory_gb=80)


@st.composite
def timed_graphs(draw: st.DrawFn) -> TaskGraph:
    n = draw(st.integers(1, 30))
    tasks = []
    for i in range(n):
        deps = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        tasks.append(
            Task(
                f"t{i}",
                model=f"m{draw(st.integers(0, 2))}",
                deps=tuple(f"t{d}" for d in sorted(deps)),
                estimated_seconds=draw(st.floats(1, 100)),
                required_gpus=draw(st.integers(1, 2)),
                memory_gb=draw(st.floats(0, 50)),
            )
        )
    return TaskGraph(tuple(tasks))


@settings(max_examples=40, deadline=None)
@given(
    graph=timed_graphs(),
    devices=st.integers(2, 5),
    policy=st.sampled_from(["small_first", "fifo", "static"]),
)
def test_simulated_schedules_are_valid_and_never_beat_the_lower_bound(
    graph: TaskGraph, devices: int, policy: str
) -> None:
    result = simulate(graph, devices=devices, device_memory_gb=80, policy=policy)
    assert result.makespan_seconds >= result.lower_bound_seconds - 1e-6
    runs = {run.task_id: run for run in result.runs}
    assert set(runs) == {task.id for task in graph}
    for task in graph:
        assert len(runs[task.id].devices) == task.required_gpus
        for dep in task.deps:
            assert runs[dep].end <= runs[task.id].start + 1e-9
    # No device runs two tasks at once.
    for device in map(str, range(devices)):
        spans = sorted((r.start, r.end) for r in result.runs if device in r.devices)
        assert all(
            a_end <= b_start + 1e-9 for (_, a_end), (b_start, _) in itertools.pairwise(spans)
        )
