"""``verify_report``: tampered reports fail, honest ones (PASS or FAIL) verify."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from invarlock_core.datasets.builtin import builtin_providers
from invarlock_core.evaluation import EvaluationRequest, evaluate
from invarlock_core.plugins import Registries
from invarlock_core.report import compute_digests
from invarlock_core.report.verification import verify_report, verify_report_file


@pytest.fixture(scope="module")
def report(tiny_model_dir: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    registries = Registries()
    for provider in builtin_providers():
        registries.datasets.add(provider, plugin="test")
    base = tiny_model_dir("gpt2")
    out = tmp_path_factory.mktemp("report")
    outcome = evaluate(
        EvaluationRequest(baseline=base, subject=base, out=out, seq_len=64, preview_windows=2, final_windows=8, device="cpu"),
        registries=registries,
    )
    return outcome.report


def _resealed(report: dict[str, Any]) -> dict[str, Any]:
    report["digests"] = compute_digests(report)
    return report


def test_honest_report_verifies_with_every_check(report: dict[str, Any]) -> None:
    result = verify_report(report)
    assert result.ok
    assert result.exit_code == 0
    assert result.problems == ()
    assert [c.name for c in result.checks] == ["schema", "pairing", "digests", "policy", "verdict", "profile"]
    assert result.summary.startswith("tier balanced, profile dev, acceptance [0.0, 1.1] (tier), ratio 1.0000")


def test_flipping_the_verdict_fails_twice(report: dict[str, Any]) -> None:
    edited = copy.deepcopy(report)
    edited["verdict"] = "FAIL"
    problems = verify_report(edited).problems
    assert any(p.startswith("digest report mismatch") for p in problems)
    assert any("recorded verdict FAIL does not follow" in p for p in problems)


def test_resealed_numbers_still_fail_the_recomputation(report: dict[str, Any]) -> None:
    edited = copy.deepcopy(report)
    edited["primary_metric"]["ratio"] = 0.99
    result = verify_report(_resealed(edited))
    assert result.exit_code == 1
    assert result.problems == ("primary_metric.ratio 0.99 differs from the recomputed 1.0",)


def test_resealed_bad_windows_with_a_pass_verdict_fail(report: dict[str, Any]) -> None:
    edited = copy.deepcopy(report)
    for window in edited["primary_metric"]["per_window"]["final"]:
        window["subject_nll"] += 0.5
    result = verify_report(_resealed(edited))
    assert any("recorded verdict PASS does not follow" in p for p in result.problems)


def test_loosened_policy_is_caught_even_when_resealed(report: dict[str, Any]) -> None:
    edited = copy.deepcopy(report)
    edited["policy"]["acceptance_range"] = [0.0, 5.0]
    assert any("is not the balanced tier's" in p for p in verify_report(_resealed(edited)).problems)
    floors = copy.deepcopy(report)
    floors["policy"]["floors"]["final_windows"] = 1
    assert any("floors differ" in p for p in verify_report(_resealed(floors)).problems)


def test_unpaired_windows_are_caught(report: dict[str, Any]) -> None:
    edited = copy.deepcopy(report)
    final = edited["primary_metric"]["per_window"]["final"]
    final[0]["id"], final[1]["id"] = final[1]["id"], final[0]["id"]
    assert any("not paired" in p for p in verify_report(_resealed(edited)).problems)
    plan = copy.deepcopy(report)
    plan["windows"]["final"][0]["digest"] = "sha256:" + "0" * 64
    assert any("window plan digest mismatch" in p for p in verify_report(_resealed(plan)).problems)


def test_schema_violations_and_unreadable_files_are_exit_2(report: dict[str, Any], tmp_path: Path) -> None:
    broken = copy.deepcopy(report)
    del broken["policy"]
    result = verify_report(broken)
    assert result.exit_code == 2
    assert "policy" in result.problems[0]
    path = tmp_path / "evaluation.report.json"
    path.write_bytes(b"\xff\xfe")
    assert verify_report_file(path).exit_code == 2
    assert verify_report_file(tmp_path / "none.json").exit_code == 2


def test_profile_floors_and_model_rehash(report: dict[str, Any], tmp_path: Path) -> None:
    assert any("profile release: 8 final windows, the floor is 400" in p for p in verify_report(report, profile="release").problems)
    assert verify_report(report, check_models=True).ok
    moved = copy.deepcopy(report)
    moved["subject"]["path"] = str(tmp_path / "gone")
    result = verify_report(_resealed(moved), check_models=True)
    assert any("is not present to re-hash" in p for p in result.problems)


def test_report_file_round_trip_is_byte_stable(report: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report, indent=1))
    assert verify_report_file(path).ok
