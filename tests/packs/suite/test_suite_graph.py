"""The run's task graph: shape per model, batch vs per-edit, calibrate-only, preset reuse, outputs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import attrs

from invarlock_core.scheduling import MemoryPlanner, ModelProfile, TaskType
from invarlock_packs.suite.config import resolve_config
from invarlock_packs.suite.graph import ENTRY_POINT, build_run_graph
from invarlock_packs.suite.models import SuiteModel
from invarlock_packs.suite.run_layout import RunLayout
from invarlock_packs.suite.scenarios import load_catalogue, resolve_clean_edits, select_scenarios

TUNED = {
    "quant_rtn": {"bits": 4, "group_size": 32},
    "fp8_quant": {"format": "e4m3fn"},
    "magnitude_prune": {"prune_level": 0.1},
    "lowrank_svd": {"rank": 56},
}
MODELS = [
    (SuiteModel("tiny-gpt2", "tiny:gpt2"), ModelProfile("tiny-gpt2", 0.01)),
    (SuiteModel("tiny-llama", "tiny:llama"), ModelProfile("tiny-llama", 0.01)),
]


def graph(tmp_path: Path, ids: tuple[str, ...] = (), **flags: object):  # type: ignore[no-untyped-def]
    config = resolve_config({"suite": "tiny", "scenario_ids": ids or None, **flags}, env={})
    chosen = select_scenarios(load_catalogue(), "tiny", config.scenario_ids)
    scenarios = resolve_clean_edits(
        chosen, TUNED, clean_runs=config.clean_runs, stress_runs=config.stress_runs
    )
    planner = MemoryPlanner(device_memory_gb=80.0)
    return build_run_graph(config, RunLayout(tmp_path), MODELS, scenarios, planner)


def test_full_tiny_graph_per_model(tmp_path: Path) -> None:
    built = graph(tmp_path)
    counts = Counter((t.model, t.type) for t in built)
    for slug in ("tiny-gpt2", "tiny-llama"):
        assert counts[slug, TaskType.SETUP_BASELINE] == 1
        assert counts[slug, TaskType.CALIBRATION_RUN] == 2
        assert counts[slug, TaskType.GENERATE_PRESET] == 1
        assert counts[slug, TaskType.CREATE_EDIT] == 8
        assert counts[slug, TaskType.EVALUATE_EDIT] == 4 * 2 + 4 * 1  # clean runs 2, stress 1
        assert counts[slug, TaskType.CREATE_ERROR] == 12
        assert counts[slug, TaskType.EVALUATE_ERROR] == 12
        assert counts[slug, TaskType.CLEANUP] == 20
    assert all(t.command is not None and t.command.entry_point == ENTRY_POINT for t in built)


def test_evaluations_wait_for_their_subject_and_the_preset(tmp_path: Path) -> None:
    built = graph(tmp_path, ("prune_clean", "nan_injection"))
    task = built["tiny-gpt2.EVALUATE_EDIT.prune_clean.run_1"]
    assert set(task.deps) == {"tiny-gpt2.CREATE_EDIT.prune_clean", "tiny-gpt2.GENERATE_PRESET"}
    assert task.outputs == ("tiny-gpt2/reports/prune_clean/run_1/evaluation.report.json",)
    error = built["tiny-gpt2.EVALUATE_ERROR.nan_injection"]
    assert error.outputs == ("tiny-gpt2/reports/errors/nan_injection/evaluation.report.json",)
    assert dict(error.command.params) == {  # type: ignore[union-attr]
        "type": "EVALUATE_ERROR",
        "model": "tiny-gpt2",
        "scenario": "nan_injection",
    }


def test_batch_edits_and_no_cleanup(tmp_path: Path) -> None:
    built = graph(
        tmp_path,
        ("prune_clean", "svd_clean", "nan_injection"),
        batch_edits="true",
        cleanup_models=False,
    )
    types = Counter(t.type for t in built if t.model == "tiny-gpt2")
    assert types[TaskType.CREATE_EDITS_BATCH] == 1
    assert types[TaskType.CREATE_EDIT] == 0
    assert types[TaskType.CREATE_ERROR] == 1  # errors are always created one by one
    assert types[TaskType.CLEANUP] == 0
    # auto: batch only when cleanup is off
    auto = graph(tmp_path, ("prune_clean",), cleanup_models=False)
    assert any(t.type is TaskType.CREATE_EDITS_BATCH for t in auto)


def test_calibrate_only_and_preset_reuse(tmp_path: Path) -> None:
    calibrate = graph(tmp_path, mode="calibrate-only")
    assert {t.type for t in calibrate} == {
        TaskType.SETUP_BASELINE,
        TaskType.CALIBRATION_RUN,
        TaskType.GENERATE_PRESET,
    }
    reused = graph(tmp_path, ("prune_clean",), preset_file=str(tmp_path / "p.toml"))
    assert not any(t.type is TaskType.CALIBRATION_RUN for t in reused)
    preset = reused["tiny-gpt2.GENERATE_PRESET"]
    assert preset.deps == ("tiny-gpt2.SETUP_BASELINE",)


def test_task_ids_are_unique_across_models(tmp_path: Path) -> None:
    built = graph(tmp_path)
    assert len({t.id for t in built}) == len(built)
    assert attrs.has(type(built.tasks[0]))


def test_repeats_add_evaluations_of_the_first_edit_outside_the_reports(tmp_path: Path) -> None:
    built = graph(tmp_path, ("prune_clean", "prune_50_stress", "nan_injection"), repeats=2)
    repeats = [t for t in built if ".repeat_" in t.id and t.model == "tiny-gpt2"]
    assert [t.id for t in repeats] == [
        "tiny-gpt2.EVALUATE_EDIT.prune_clean.repeat_1",
        "tiny-gpt2.EVALUATE_EDIT.prune_clean.repeat_2",
    ]
    assert repeats[0].outputs == ("tiny-gpt2/repeats/prune_clean/repeat_1/evaluation.report.json",)
    cleanup = built["tiny-gpt2.CLEANUP.prune_clean"]
    assert set(cleanup.deps) >= {t.id for t in repeats}  # the subject outlives its repeats
