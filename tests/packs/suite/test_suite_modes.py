"""Run modes end to end: --calibrate-only then --run-only, --repeats, --determinism, baseline reuse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from invarlock_core.scheduling import TaskQueue, TaskType

SMALL = {
    "DRIFT_CALIBRATION_RUNS": "1",
    "CLEAN_EDIT_RUNS": "1",
    "STRESS_EDIT_RUNS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def pack_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invarlock_core.cli", "pack", "run", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **SMALL},
        timeout=600,
        check=False,
    )


@pytest.mark.slow
def test_calibrate_only_then_run_only_with_repeats_and_strict_determinism(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = pack_run(
        "--suite", "tiny", "--model", "tiny:gpt2", "--out", str(out),
        "--scenario-ids", "prune_clean,prune_50_stress,nan_injection",
        "--calibrate-only", "--repeats", "2", "--determinism", "strict",
    )  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    assert "verdict: none" in first.stdout
    assert (out / "presets" / "calibrated_preset_tiny-gpt2.toml").is_file()
    assert not (out / "reports" / "final_verdict.json").exists()
    assert not TaskQueue.exists(out)  # set aside for --run-only
    graph = json.loads((out / "state" / "graph.json").read_text())
    assert {t["type"] for t in graph["tasks"]} == {
        TaskType.SETUP_BASELINE, TaskType.CALIBRATION_RUN, TaskType.GENERATE_PRESET,
    }  # fmt: skip

    second = pack_run("--out", str(out), "--run-only", "--no-pack")
    assert second.returncode in (0, 1), second.stderr[-3000:]
    with TaskQueue(out) as queue:
        records = {r.id: r for r in queue.records()}
    assert all(r.state == "completed" for r in records.values())
    assert records["tiny-gpt2.SETUP_BASELINE"].skipped  # calibration work is not redone
    assert records["tiny-gpt2.GENERATE_PRESET"].skipped
    graph = json.loads((out / "state" / "graph.json").read_text())
    env = graph["tasks"][0]["command"]["env"]
    assert env["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert env["NVIDIA_TF32_OVERRIDE"] == "0"

    repeats = json.loads((out / "analysis" / "determinism_repeats.json").read_text())
    (model,) = repeats["models"]
    assert model["scenario"] == "prune_clean"
    assert len(model["runs"]) == 3
    assert model["identical"] is True  # CPU evaluation is deterministic
    assert model["max_abs_log_ratio_drift"] == 0.0

    summary = json.loads((out / "analysis" / "evaluation_optimization_summary.json").read_text())
    # the baseline report and one calibration run score the baseline; every subject reuses it
    assert summary["baseline_report_reuse"] == {"reused": 5, "scored": 2}


@pytest.mark.slow
def test_batch_edits_symlinked_baseline_and_kept_subjects(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable, "-m", "invarlock_core.cli", "pack", "run", "--suite", "tiny",
            "--model", "tiny:llama", "--out", str(out), "--no-pack",
            "--scenario-ids", "quant_4bit_clean,prune_50_stress,weight_tying_break",
        ],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            **SMALL,
            "PACK_USE_BATCH_EDITS": "true",
            "PACK_CLEANUP_MODELS": "0",
            "PACK_BASELINE_STORAGE_MODE": "snapshot_symlink",
        },
        timeout=600,
        check=False,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr[-3000:]
    with TaskQueue(out) as queue:
        types = [r.type for r in queue.records()]
    assert types.count(TaskType.CREATE_EDITS_BATCH) == 1
    assert TaskType.CLEANUP not in types
    baseline = out / "tiny-llama" / "models" / "baseline"
    assert (baseline / "config.json").is_symlink()
    for subject in ("quant_4bit_clean", "prune_50_stress", "error_weight_tying_break"):
        meta = json.loads(
            (out / "tiny-llama" / "models" / subject / "edit_metadata.json").read_text()
        )
        assert meta["scenario_id"] == subject.removeprefix("error_")
    verdict = json.loads((out / "reports" / "final_verdict.json").read_text())
    assert verdict["criteria"]["clean_all_pass"] is True
    assert verdict["criteria"]["stress_required_fail"] is True
    assert verdict["criteria"]["error_injection_detected"] is True
