"""The verdict's sidecars (S-25, R-09, G-15) written for a real suite run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from verdicthelpers import edit_json

from invarlock_packs.suite.verdict import compile_final_verdict, write_verdict_outputs

PRUNE = "gpt2/reports/prune_50_stress/run_1/evaluation.report.json"
CLEAN_RUNS = [f"gpt2/reports/quant_8bit_clean/run_{n}/evaluation.report.json" for n in (1, 2)]


def _sidecar(run: Path, name: str) -> Any:
    return json.loads((run / "reports" / name).read_text())


def _set_guard_metric(path: Path, guard: str, key: str, value: float) -> None:
    def change(report: dict[str, Any]) -> None:
        entry = next(g for g in report["guards"] if g["name"] == guard)
        entry["metrics"][key] = value

    edit_json(path, change)


def _rewrite(run: Path) -> None:
    write_verdict_outputs(run, compile_final_verdict(run))


def test_category_summary_counts_each_kind_against_its_expectation(verdict_run: Path) -> None:
    categories = _sidecar(verdict_run, "category_summary.json")["categories"]
    assert categories["clean"] == {
        "expected": "PASS",
        "scenarios": 1,
        "runs": 4,
        "passed": 4,
        "failed": 0,
        "missing": 0,
        "fail_fraction": 0.0,
        "ok": True,
    }
    assert categories["stress_informational"]["fail_fraction"] == 0.5
    assert categories["stress_informational"]["ok"] is True
    assert categories["error_must_detect"]["failed"] == 2


def test_scenario_and_guard_signals_say_which_guard_flagged_what(verdict_run: Path) -> None:
    scenarios = {
        s["id"]: s for s in _sidecar(verdict_run, "scenario_signal_summary.json")["scenarios"]
    }
    nan = scenarios["nan_injection"]
    assert nan["flagged_by"]["invariants"] == 2
    assert nan["primary_guard_flagged_runs"] == 2
    assert nan["models"]["llama"]["observed"] == "FAIL"
    assert scenarios["rmt_norm_noise"]["primary_guard_flagged_runs"] == 0
    assert scenarios["quant_8bit_clean"]["flagged_by"] == {}

    signals = _sidecar(verdict_run, "guard_signal_summary.json")
    assert signals["guards"] == ["invariants", "primary_metric", "rmt", "spectral", "variance"]
    assert signals["by_scenario"]["nan_injection"]["invariants"] == {"runs": 2, "flagged": 2}
    assert signals["by_scenario"]["prune_50_stress"]["spectral"] == {"runs": 2, "flagged": 2}
    assert all(cell["flagged"] == 0 for cell in signals["by_kind"]["clean"].values())


def test_interventions_list_non_failing_remediation_and_probe_sidecars(verdict_run: Path) -> None:
    summary = _sidecar(verdict_run, "guard_intervention_summary.json")
    assert {
        "report": PRUNE,
        "guard": "variance",
        "signal": "proposed_scales",
        "value": 2.0,
    } in summary["interventions"]
    # A failed guard is a failure, not an intervention.
    assert not any(
        i["report"] == PRUNE and i["guard"] == "spectral" for i in summary["interventions"]
    )
    probes = {(p["report"], p["file"]) for p in summary["probes"]}
    assert probes == {
        (f"{m}/reports/errors/rmt_norm_noise/evaluation.report.json", "rmt_probe.json")
        for m in ("gpt2", "llama")
    }


def test_edit_artifacts_and_model_summaries(verdict_run: Path) -> None:
    artifacts = _sidecar(verdict_run, "edit_artifact_summary.json")["artifacts"]
    assert len(artifacts) == 14
    clean = next(
        a for a in artifacts if (a["model"], a["scenario_id"]) == ("gpt2", "quant_8bit_clean")
    )
    assert clean["reports"] == 2
    assert clean["one_subject"] is True
    assert clean["artifact_class"] == "validation_subject_checkpoint"
    assert 0 < clean["tensors_changed"] < clean["tensors_total"]
    assert clean["output_digest"].startswith("sha256:")
    summary = _sidecar(verdict_run, "model_summary_llama.json")
    assert summary["verdict"] == "PASS"
    assert [s["scenario_id"] for s in summary["scenarios"]][:2] == [
        "quant_8bit_clean",
        "prune_50_stress",
    ]


def test_guard_value_sweep_counts_only_movement_beyond_the_baseline(run_copy: Path) -> None:
    _rewrite(run_copy)
    sweep = _sidecar(run_copy, "guard_value_all_guard_probe_sweep.json")
    cases = {(c["model"], c["scenario_id"], c["guard"]): c for c in sweep["cases"]}
    # The primary metric accepted the pruned subject; spectral moved where the baseline did not.
    prune = cases[("gpt2", "prune_50_stress", "spectral")]
    assert prune["runs"][0]["report"] == PRUNE
    assert prune["runs"][0]["movement"]["violations_total"] > 0
    assert prune["status"] == "unconfirmed"  # one run: no clean confirmation rerun
    # Subjects the primary metric rejected are no guard-value case.
    assert not any(c["scenario_id"] == "nan_injection" for c in sweep["cases"])
    assert sweep["models_without_baseline"] == []

    # Movement the noop baseline already shows does not count.
    moved = prune["runs"][0]["movement"]["violations_total"]
    baseline = run_copy / "gpt2/reports/baseline/evaluation.report.json"
    _set_guard_metric(baseline, "spectral", "violations_total", moved)
    _rewrite(run_copy)
    after = _sidecar(run_copy, "guard_value_all_guard_probe_sweep.json")
    assert ("gpt2", "prune_50_stress", "spectral") not in {
        (c["model"], c["scenario_id"], c["guard"]) for c in after["cases"]
    }


def test_a_guard_value_case_is_confirmed_by_a_second_run(run_copy: Path) -> None:
    _set_guard_metric(run_copy / CLEAN_RUNS[0], "spectral", "caps_applied", 2)
    _rewrite(run_copy)
    cases = _sidecar(run_copy, "guard_value_all_guard_probe_sweep.json")["cases"]
    case = next(c for c in cases if c["scenario_id"] == "quant_8bit_clean")
    assert (case["guard"], case["status"]) == ("spectral", "unconfirmed")
    _set_guard_metric(run_copy / CLEAN_RUNS[1], "spectral", "caps_applied", 1)
    _rewrite(run_copy)
    sweep = _sidecar(run_copy, "guard_value_all_guard_probe_sweep.json")
    case = next(c for c in sweep["cases"] if c["scenario_id"] == "quant_8bit_clean")
    assert case["status"] == "confirmed"
    assert [r["movement"] for r in case["runs"]] == [{"caps_applied": 2.0}, {"caps_applied": 1.0}]
    assert sweep["confirmed"] == 1
