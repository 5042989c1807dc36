"""``pack verify`` recomputes the final verdict from the bundled reports and rejects disagreement."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from packhelpers import reseal, write_json
from test_without_torch import BLOCKER
from verdicthelpers import build_suite_pack, edit_json, move_report

from invarlock_packs import verify_pack
from invarlock_packs.verdict_check import recompute_pack_verdict

CLEAN_RUN_2 = "gpt2/reports/quant_8bit_clean/run_2"


def _verdict_check(pack: Path, **kwargs: Any) -> Any:
    result = verify_pack(pack, **kwargs)
    return result, next(c for c in result.checks if c.name == "reports.final_verdict")


def test_the_honest_suite_pack_verifies_with_its_verdict_recomputed(
    suite_pack: Path, key: Any
) -> None:
    result, check = _verdict_check(suite_pack, strict=True, expected_fingerprint=key.fingerprint)
    assert result.ok, result.problems
    assert check.ok
    assert check.detail == "final verdict PASS recomputed from 16 reports"


def test_a_hand_written_pass_over_a_failing_clean_report_is_rejected(
    verdict_run: Path, tmp_path: Path, key: Any, invarlock: Callable[..., Any]
) -> None:
    run = Path(shutil.copytree(verdict_run, tmp_path / "run"))
    move_report(run / "gpt2/reports/prune_50_stress/run_1", run / CLEAN_RUN_2)
    hand_written = write_json(tmp_path / "final_verdict.json", {"verdict": "PASS"})
    pack = build_suite_pack(run, tmp_path / "pack", key, final_verdict=hand_written)
    result, check = _verdict_check(pack, strict=True)
    assert result.exit_code == 7
    assert not check.ok
    assert check.detail == (
        "final verdict is recorded PASS but the bundled reports give FAIL (clean_all_pass: "
        "gpt2/quant_8bit_clean: reports/gpt2/quant_8bit_clean/run_2/evaluation.report.json is FAIL)"
    )
    cli = invarlock("pack", "verify", str(pack), "--strict")
    assert cli.returncode == 7
    assert "reports.final_verdict" in cli.stdout
    assert cli.stderr.count("\n") == 1
    assert "Traceback" not in cli.stderr


def test_a_recorded_criterion_that_the_reports_contradict_is_named(
    suite_pack_copy: Path, key: Any
) -> None:
    def lie(doc: dict[str, Any]) -> None:
        doc["criteria"]["informational_errors_met"] = False
        doc["counts"]["clean_failed"] = 1

    edit_json(suite_pack_copy / "results/final_verdict.json", lie)
    reseal(suite_pack_copy, key.private_key_path)
    result, check = _verdict_check(suite_pack_copy)
    assert result.exit_code == 7
    assert check.detail == (
        "criterion informational_errors_met is recorded false but the reports give true; "
        "count clean_failed is recorded 1 but the pack holds 0"
    )


def test_a_scenario_relabelled_clean_is_rejected(suite_pack_copy: Path, key: Any) -> None:
    # The manifest now calls the required-fail stress scenario clean (kind and category alike),
    # and so do its reports' edit metadata: every consistency check agrees, but its reports FAIL.
    def relabel(doc: dict[str, Any]) -> None:
        entry = next(s for s in doc["scenarios"] if s["id"] == "prune_50_stress")
        entry.update(kind="clean", category="clean")

    edit_json(suite_pack_copy / "metadata/scenarios.json", relabel)
    for meta in suite_pack_copy.glob("reports/*/prune_50_stress/*/edit_metadata.json"):
        edit_json(meta, lambda m: m.update(category="clean"))
    reseal(suite_pack_copy, key.private_key_path)
    result, check = _verdict_check(suite_pack_copy)
    assert result.exit_code == 7
    assert [c.name for c in result.checks if not c.ok] == ["reports.final_verdict"]
    assert (
        "recorded PASS but the bundled reports give FAIL (clean_all_pass: gpt2/prune_50_stress"
        in (check.detail)
    )
    assert "criterion clean_all_pass is recorded true but the reports give false" in check.detail


def test_a_category_that_does_not_match_its_scenario_kind_is_rejected(
    suite_pack_copy: Path, key: Any
) -> None:
    edit_json(
        suite_pack_copy / "metadata/scenarios.json",
        lambda doc: doc["scenarios"][1].update(kind="stress_informational"),
    )
    reseal(suite_pack_copy, key.private_key_path)
    result, check = _verdict_check(suite_pack_copy)
    assert result.exit_code == 7
    assert check.detail.startswith(
        "metadata/scenarios.json: scenario prune_50_stress has kind 'stress_informational' but "
        "category 'stress_required_fail'"
    )


def test_dropping_a_models_reports_is_rejected(suite_pack_copy: Path, key: Any) -> None:
    shutil.rmtree(suite_pack_copy / "reports/llama")
    reseal(
        suite_pack_copy,
        key.private_key_path,
        edit_manifest=lambda m: m["subject"].update(
            reports=[r for r in m["subject"]["reports"] if "/llama/" not in r["path"]]
        ),
    )
    result, check = _verdict_check(suite_pack_copy)
    assert result.exit_code == 7, result.problems
    assert "reports_complete: llama/quant_8bit_clean: 0 of 2 reports" in check.detail


def test_only_sealed_files_are_read(suite_pack: Path) -> None:
    sealed = {
        line.split("  ", 1)[1]
        for line in (suite_pack / "checksums.sha256").read_text().splitlines()
    }
    assert recompute_pack_verdict(suite_pack, sealed).ok
    missing = recompute_pack_verdict(suite_pack, sealed - {"results/final_verdict.json"})
    assert (missing.ok, missing.detail) == (
        False,
        "results/final_verdict.json is missing or unsealed",
    )
    no_manifest = recompute_pack_verdict(suite_pack, sealed - {"metadata/scenarios.json"})
    assert (no_manifest.ok, no_manifest.category) == (True, "info")
    # A report whose edit metadata is not sealed is not counted: its scenario is incomplete.
    partial = recompute_pack_verdict(
        suite_pack, sealed - {"reports/gpt2/quant_8bit_clean/run_2/edit_metadata.json"}
    )
    assert not partial.ok
    assert "gpt2/quant_8bit_clean: 1 of 2 reports" in partial.detail


@pytest.mark.slow
def test_the_recomputation_runs_without_torch(suite_pack: Path, key: Any) -> None:
    script = BLOCKER + (
        "import json\n"
        "from invarlock_packs import verify_pack\n"
        f"r = verify_pack({str(suite_pack)!r}, strict=True, expected_fingerprint={key.fingerprint!r})\n"
        "check = next(c for c in r.checks if c.name == 'reports.final_verdict')\n"
        "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "print(json.dumps({'ok': r.ok, 'detail': check.detail, 'heavy': heavy}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300
    )
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome == {
        "ok": True,
        "detail": "final verdict PASS recomputed from 16 reports",
        "heavy": [],
    }


def test_report_assurance_off_skips_the_recomputation(suite_pack_copy: Path, key: Any) -> None:
    edit_json(suite_pack_copy / "results/final_verdict.json", lambda d: d.update(verdict="FAIL"))
    reseal(suite_pack_copy, key.private_key_path)
    assert verify_pack(suite_pack_copy).exit_code == 7
    result, check = _verdict_check(suite_pack_copy, report_assurance="off")
    assert result.ok
    assert (check.category, check.detail) == (
        "info",
        "final verdict not recomputed (report assurance off)",
    )


def test_the_recomputation_uses_the_threshold_the_verdict_records(
    verdict_run: Path, tmp_path: Path, key: Any
) -> None:
    from invarlock_packs.suite.verdict import compile_final_verdict, write_verdict_outputs

    run = Path(shutil.copytree(verdict_run, tmp_path / "run"))
    strict = compile_final_verdict(run, informational_min_fraction=0.75)
    write_verdict_outputs(run, strict)
    pack = build_suite_pack(run, tmp_path / "pack", key)
    result, check = _verdict_check(pack, strict=True)
    assert result.ok, result.problems
    assert check.detail == "final verdict FAIL recomputed from 16 reports"
