"""compile_final_verdict / write_verdict_outputs on a real suite run directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from verdicthelpers import edit_json, move_report

from invarlock_core.errors import InputError
from invarlock_core.schema_validation import schema_errors
from invarlock_packs.suite.verdict import (
    FinalVerdict,
    ScenarioOutcome,
    compile_final_verdict,
    write_verdict_outputs,
)

REPORT = "evaluation.report.json"


def _outcome(verdict: FinalVerdict, model: str, scenario: str) -> ScenarioOutcome:
    return next(o for o in verdict.scenarios if (o.model, o.scenario_id) == (model, scenario))


def _swap_report(run: Path, source: str, target: str) -> None:
    """Put the real report of ``source`` where ``target``'s report is (its edit metadata stays)."""
    move_report(run / source, run / target)


def test_the_real_run_passes_with_every_kind_as_expected(suite_run: Path) -> None:
    verdict = compile_final_verdict(suite_run)
    assert verdict.verdict == "PASS", verdict.failed_requirements
    assert verdict.failed_requirements == ()
    assert verdict.models == ("gpt2", "llama")
    counts = verdict.counts
    assert (counts.reports, counts.clean_runs, counts.stress_required_runs) == (16, 4, 2)
    assert (counts.stress_informational_runs, counts.stress_informational_failed) == (4, 2)
    assert (counts.error_must_detect_runs, counts.error_must_detect_missed) == (2, 0)
    for model in verdict.models:
        assert _outcome(verdict, model, "quant_8bit_clean").observed == "PASS"
        assert _outcome(verdict, model, "prune_50_stress").observed == "FAIL"
        nan = _outcome(verdict, model, "nan_injection")
        assert nan.observed == "FAIL"
        assert "invariants" in nan.detected_by
        assert nan.primary_guard_flagged is True


def test_a_failing_clean_run_fails_the_verdict_and_is_named(run_copy: Path) -> None:
    _swap_report(
        run_copy, "gpt2/reports/prune_50_stress/run_1", "gpt2/reports/quant_8bit_clean/run_2"
    )
    verdict = compile_final_verdict(run_copy)
    assert verdict.verdict == "FAIL"
    assert not verdict.criteria.clean_all_pass
    assert verdict.criteria.stress_required_fail
    assert verdict.failed_requirements == (
        "clean_all_pass: gpt2/quant_8bit_clean: "
        "gpt2/reports/quant_8bit_clean/run_2/evaluation.report.json is FAIL",
    )
    assert _outcome(verdict, "gpt2", "quant_8bit_clean").observed == "MIXED"


def test_a_passing_required_stress_run_fails_the_verdict(run_copy: Path) -> None:
    _swap_report(
        run_copy, "llama/reports/quant_8bit_clean/run_1", "llama/reports/prune_50_stress/run_1"
    )
    verdict = compile_final_verdict(run_copy)
    assert verdict.verdict == "FAIL"
    assert not verdict.criteria.stress_required_fail
    assert verdict.counts.stress_required_passed == 1
    assert "llama/prune_50_stress" in verdict.failed_requirements[0]


def test_an_undetected_must_detect_error_fails_the_verdict(run_copy: Path) -> None:
    _swap_report(
        run_copy, "gpt2/reports/quant_8bit_clean/run_1", "gpt2/reports/errors/nan_injection"
    )
    verdict = compile_final_verdict(run_copy)
    assert not verdict.criteria.error_injection_detected
    assert verdict.failed_requirements[0].startswith(
        "error_injection_detected: gpt2/nan_injection: not detected"
    )
    assert _outcome(verdict, "gpt2", "nan_injection").primary_guard_flagged is False


def test_the_informational_fraction_is_configurable(suite_run: Path) -> None:
    # Half of the informational stress runs fail: enough at 0.5, not at 0.75 (both informational
    # error runs fail, so that criterion holds at either threshold).
    assert compile_final_verdict(suite_run, informational_min_fraction=0.5).verdict == "PASS"
    strict = compile_final_verdict(suite_run, informational_min_fraction=0.75)
    assert strict.verdict == "FAIL"
    assert not strict.criteria.informational_stress_met
    assert strict.criteria.informational_errors_met
    assert strict.criteria.clean_all_pass
    assert "2 of 4 failed (0.50 < 0.75)" in strict.failed_requirements[0]


def test_a_missing_report_fails_the_verdict(run_copy: Path) -> None:
    shutil.rmtree(run_copy / "llama/reports/quant_8bit_clean/run_2")
    verdict = compile_final_verdict(run_copy)
    assert not verdict.criteria.reports_complete
    assert verdict.counts.missing_reports == 1
    assert verdict.failed_requirements == (
        "reports_complete: llama/quant_8bit_clean: 1 of 2 reports",
    )


def test_a_category_that_is_not_the_scenario_kind_fails_the_verdict(run_copy: Path) -> None:
    meta = run_copy / "gpt2/reports/prune_50_stress/run_1/edit_metadata.json"
    edit_json(meta, lambda m: m.update(category="clean"))
    verdict = compile_final_verdict(run_copy)
    assert not verdict.criteria.categories_consistent
    assert (
        "category 'clean' is not the kind 'stress_required_fail'" in verdict.failed_requirements[0]
    )


def test_outputs_are_written_as_one_set(run_copy: Path) -> None:
    verdict = compile_final_verdict(run_copy)
    paths = write_verdict_outputs(run_copy, verdict)
    names = sorted(p.name for p in paths)
    assert names == sorted(p.name for p in (run_copy / "reports").iterdir())
    assert {
        "final_verdict.json",
        "final_verdict.txt",
        "category_summary.json",
        "guard_signal_summary.json",
        "guard_intervention_summary.json",
        "scenario_signal_summary.json",
        "edit_artifact_summary.json",
        "guard_value_all_guard_probe_sweep.json",
        "model_summary_gpt2.json",
        "model_summary_llama.json",
    } == set(names)
    document = json.loads(paths[0].read_text())
    assert schema_errors(document, "final-verdict", "invarlock_packs") == []
    assert document["verdict"] == "PASS"
    assert paths[1].read_text().splitlines()[0] == "PASS"
    # A second write replaces the set; nothing staged is left beside it.
    (run_copy / "reports" / "stale.json").write_text("{}")
    write_verdict_outputs(run_copy, verdict)
    assert not (run_copy / "reports" / "stale.json").exists()
    assert [p.name for p in run_copy.iterdir() if p.name.startswith(".")] == []


def test_a_run_without_a_scenario_manifest_is_a_one_line_input_error(run_copy: Path) -> None:
    (run_copy / "state/scenarios.json").unlink()
    with pytest.raises(InputError, match=r"scenario manifest .* does not exist") as info:
        compile_final_verdict(run_copy)
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)
