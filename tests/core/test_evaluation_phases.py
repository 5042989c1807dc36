"""Evaluation as phases: inputs, a reusable baseline state, many subjects, the typed report.

Real tiny GPT-2 checkpoints; throwaway guards and edits in hand-built registries.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_evaluation import QUICK, _registries

from invarlock_core.errors import UsageError
from invarlock_core.evaluation import EvaluationRequest, evaluate, evaluate_many
from invarlock_core.evaluation.baseline_phase import baseline_phase
from invarlock_core.evaluation.inputs import resolve_inputs
from invarlock_core.evaluation.judging import judge_phase
from invarlock_core.evaluation.run import evaluate_subject, subject_names
from invarlock_core.evaluation.subject_phase import subject_phase
from invarlock_core.evaluation.subjects import Subject
from invarlock_core.evaluation.timing import Stopwatch
from invarlock_core.guarding import GuardContext, GuardResult, ModelUnderTest
from invarlock_core.report.sections import EvaluationReport, parse_report, report_json
from invarlock_core.report.verification import verify_report_file

REPORTS_V1 = Path(__file__).parent / "data" / "reports_v1"


@attrs.define
class PreparingGuard:
    name: str = "invariants"
    summary: str = "counts baseline measurements"
    prepares: int = 0

    def prepare(self, baseline: ModelUnderTest, context: GuardContext) -> Any:
        self.prepares += 1
        assert baseline.model is not None
        return sum(p.numel() for p in baseline.model.parameters())

    def validate(self, subject: ModelUnderTest, baseline_state: Any, context: GuardContext) -> GuardResult:
        same = sum(p.numel() for p in subject.model.parameters()) == baseline_state
        return GuardResult(self.name, same, "pass" if same else "fail")


@pytest.fixture(scope="module")
def baseline(tiny_model_dir: Callable[[str], Path]) -> Path:
    return tiny_model_dir("gpt2")


@pytest.fixture(scope="module")
def other(tiny_model_dir: Callable[..., Path]) -> Path:
    return tiny_model_dir("gpt2", seed=1)


def test_inputs_are_resolved_before_any_model_is_loaded(baseline: Path, tmp_path: Path) -> None:
    inputs = resolve_inputs(
        EvaluationRequest(baseline=baseline, subject=baseline, out=tmp_path / "o", **QUICK), _registries()
    )
    assert (inputs.settings.seq_len, inputs.settings.final, inputs.settings.preview) == (64, 6, 2)
    assert inputs.device == "cpu"
    assert inputs.guards.chain.order == ()
    assert not (tmp_path / "o").exists()
    with pytest.raises(UsageError, match="--preview-windows 2 is below the ci profile"):
        resolve_inputs(
            EvaluationRequest(
                baseline=baseline, subject=baseline, out=tmp_path, profile="ci", **{**QUICK, "final_windows": 1}
            ),
            _registries(),
        )


def test_the_baseline_state_serves_many_subjects(baseline: Path, other: Path, tmp_path: Path) -> None:
    guard = PreparingGuard()
    inputs = resolve_inputs(EvaluationRequest(baseline=baseline, subject=other, out=tmp_path, **QUICK), _registries(guard))
    state = baseline_phase(inputs)
    assert guard.prepares == 1
    assert state.under_test.model is None  # released: one model at a time
    assert state.digest.startswith("sha256:")
    assert state.windows_digest == state.plan.digest
    assert state.final_nll.shape == (6,)
    assert state.preview_nll.shape == (2,)
    reports = []
    for name, subject in (("a", other), ("b", baseline)):
        clock = Stopwatch()
        measured = subject_phase(inputs, state, Subject(path=subject, metadata=None), tmp_path / name, clock)
        judged = judge_phase(inputs.policy.to_json(), state, measured)
        assert [w.baseline_nll for w in judged.final] == list(state.final_nll)
        reports.append(judged)
        assert set(clock.values["subject"]) == {"load_s", "eval_s", "guards_validate_s"}
    assert guard.prepares == 1  # the guard's baseline state came from the cache
    identical = reports[1]
    assert all(w.subject_nll == pytest.approx(w.baseline_nll, abs=1e-9) for w in identical.final)
    assert identical.judgement.verdict == "PASS"


def test_evaluate_many_scores_the_baseline_once_and_matches_separate_runs(
    baseline: Path, other: Path, tmp_path: Path
) -> None:
    guard = PreparingGuard()
    copy = tmp_path / "copy_of_baseline"
    shutil.copytree(baseline, copy)
    request = EvaluationRequest(baseline=baseline, out=tmp_path / "many", **QUICK)
    many = evaluate_many(request, [other, copy], registries=_registries(guard))
    assert guard.prepares == 1
    assert [o.verdict for o in many.outcomes] == ["FAIL", "PASS"]
    assert many.exit_code == 1
    for name in (other.name, "copy_of_baseline"):
        report_file = tmp_path / "many" / name / "evaluation.report.json"
        assert verify_report_file(report_file).ok
    single = evaluate(
        EvaluationRequest(baseline=baseline, subject=other, out=tmp_path / "single", **QUICK), registries=_registries()
    )
    first = many.outcomes[0].report
    assert first["primary_metric"]["per_window"] == single.report["primary_metric"]["per_window"]
    assert first["primary_metric"]["ratio"] == single.report["primary_metric"]["ratio"]
    assert first["windows"]["digest"] == single.report["windows"]["digest"]


def test_evaluate_many_refuses_subjects_with_the_same_name(baseline: Path, other: Path, tmp_path: Path) -> None:
    twin = tmp_path / "x" / other.name
    shutil.copytree(other, twin)
    with pytest.raises(UsageError, match="two subjects are named"):
        evaluate_many(EvaluationRequest(baseline=baseline, out=tmp_path / "o", **QUICK), [other, twin])
    assert subject_names([Path("a/s1"), Path("b/s2")]) == ["s1", "s2"]


def test_evaluate_subject_reuses_a_state_for_an_edit(baseline: Path, tmp_path: Path) -> None:
    inputs = resolve_inputs(EvaluationRequest(baseline=baseline, subject=baseline, out=tmp_path, **QUICK), _registries())
    state = baseline_phase(inputs)
    outcome = evaluate_subject(inputs, state, out=tmp_path / "edit", edit="scale_test:-1")
    assert outcome.verdict == "FAIL"
    assert outcome.report["subject"]["edit_spec"] == "scale_test:-1"
    assert outcome.report["timings"]["edit_s"] > 0
    assert isinstance(outcome.sections, EvaluationReport)
    assert outcome.sections.digests is not None
    assert report_json(outcome.sections) == outcome.report


@pytest.mark.parametrize("name", ["fail_subject", "pass_edit"])
def test_reports_written_before_the_typed_report_read_back_byte_for_byte(name: str) -> None:
    raw = (REPORTS_V1 / name / "evaluation.report.json").read_text("utf-8")
    typed = parse_report(json.loads(raw))
    again = json.dumps(report_json(typed), sort_keys=True, indent=2, allow_nan=False) + "\n"
    assert again == raw
    assert verify_report_file(REPORTS_V1 / name).ok


def test_a_new_report_has_the_keys_of_an_old_one(baseline: Path, other: Path, tmp_path: Path) -> None:
    outcome = evaluate(
        EvaluationRequest(baseline=baseline, subject=other, out=tmp_path, **QUICK), registries=_registries()
    )
    old = json.loads((REPORTS_V1 / "fail_subject" / "evaluation.report.json").read_text("utf-8"))

    def keys(value: Any, prefix: str = "") -> set[str]:
        if not isinstance(value, dict):
            return set()
        found = set()
        for key, item in value.items():
            if key in {"edit", "metrics", "details", "thresholds", "timings", "guards", "validation"}:
                found.add(prefix + key)
                continue
            found |= {prefix + key} | keys(item, f"{prefix}{key}.")
        return found

    # The only addition: the report binds its timing file and runtime manifest.
    bound = {"sidecars", "sidecars.evaluate_timing.json", "sidecars.runtime.manifest.json"}
    assert keys(outcome.report) == keys(old) | bound


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.floats(0, 10)), max_size=8))
def test_stopwatch_records_the_last_value_of_each_key(entries: list[tuple[str, float]]) -> None:
    clock = Stopwatch()
    for key, value in entries:
        clock.set("section", key, value=value)
    assert clock.values.get("section", {}) == dict(entries)


def test_stopwatch_moves_observer_seconds_between_steps() -> None:
    clock = Stopwatch()
    with clock.measure("scoring") as lap:
        moved = lap.move(5.0)
    with clock.measure("guards") as guards:
        guards.shift += moved
    assert clock.values["scoring"] < 0 < 5.0 <= clock.values["guards"]
    copy = clock.copy()
    copy.set("scoring", value=1.0)
    assert clock.values["scoring"] < 0
