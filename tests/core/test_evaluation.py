"""The evaluation API: guard-chain wiring, edits, presets, baseline reuse and assurance mode.

Runs :func:`invarlock_core.evaluation.evaluate` in-process on a tiny real GPT-2 with throwaway
guard and edit plugins registered into hand-built registries.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

from invarlock_core.datasets.builtin import builtin_providers
from invarlock_core.editing import EditParameter, EditSpec
from invarlock_core.errors import InputError, SchemaError, UsageError
from invarlock_core.evaluation import EvaluationRequest, evaluate
from invarlock_core.guarding import GuardContext, GuardResult, ModelUnderTest, Violation
from invarlock_core.plugins import Registries
from invarlock_core.report.verification import verify_report_file

pytestmark = pytest.mark.slow

QUICK: dict[str, Any] = {"seq_len": 64, "preview_windows": 2, "final_windows": 6, "device": "cpu"}


@attrs.define
class CountingGuard:
    name: str = "invariants"
    summary: str = "records what it is given"
    prepared: list[ModelUnderTest] = attrs.field(factory=list)
    contexts: list[GuardContext] = attrs.field(factory=list)
    shapes: list[tuple[int, ...]] = attrs.field(factory=list)

    def prepare(self, baseline: ModelUnderTest, context: GuardContext) -> Any:
        self.prepared.append(baseline)
        self.shapes = [tuple(t.shape) for t in baseline.calibration]
        return {"params": sum(p.numel() for p in baseline.model.parameters())}

    def validate(self, subject: ModelUnderTest, baseline_state: Any, context: GuardContext) -> GuardResult:
        self.contexts.append(context)
        params = sum(p.numel() for p in subject.model.parameters())
        ok = params == baseline_state["params"]
        return GuardResult(self.name, ok, "pass" if ok else "fail", metrics={"params": params})


@attrs.frozen
class CrashingGuard:
    name: str = "boom"
    summary: str = "raises on the subject"

    def prepare(self, baseline: ModelUnderTest, context: GuardContext) -> Any:
        return None

    def validate(self, subject: ModelUnderTest, baseline_state: Any, context: GuardContext) -> GuardResult:
        raise RuntimeError("singular matrix")


@attrs.frozen
class FailingGuard:
    name: str = "spectral"
    summary: str = "always fails"

    def prepare(self, baseline: ModelUnderTest, context: GuardContext) -> Any:
        return None

    def validate(self, subject: ModelUnderTest, baseline_state: Any, context: GuardContext) -> GuardResult:
        return GuardResult(
            self.name,
            False,
            "fail",
            violations=(Violation("transformer.h.0.mlp.c_fc.weight", "sigma 20x the baseline", 20.0, 1.5),),
        )


@attrs.frozen
class ScaleEdit:
    name: str = "scale_test"
    summary: str = "multiplies every 2-D weight by a factor"
    artifact_class: str = "validation_subject_checkpoint"
    parameters: tuple[EditParameter, ...] = (EditParameter("factor", "float", 1.0),)

    def apply(self, spec: EditSpec, *, baseline: Path, out: Path, seed: int) -> Mapping[str, Any]:
        from safetensors.torch import load_file, save_file

        factor = float(spec.args[0]) if spec.args else 1.0
        assert out.is_dir()
        assert not any(out.iterdir())
        for item in baseline.iterdir():
            shutil.copy(item, out / item.name)
        tensors = load_file(str(out / "model.safetensors"))
        save_file(
            {k: v * factor if v.ndim == 2 and ".h." in k else v for k, v in tensors.items()},
            str(out / "model.safetensors"),
            metadata={"format": "pt"},
        )
        return {"edit": "scale_test", "factor": factor, "seed": seed}


def _registries(*guards: Any) -> Registries:
    registries = Registries()
    for provider in builtin_providers():
        registries.datasets.add(provider, plugin="test")
    for guard in guards:
        registries.guards.add(guard, plugin="test")
    registries.edits.add(ScaleEdit(), plugin="test")  # type: ignore[arg-type]
    return registries


@pytest.fixture(scope="module")
def baseline(tiny_model_dir: Callable[[str], Path]) -> Path:
    return tiny_model_dir("gpt2")


def test_guard_chain_prepares_once_and_passes_preset_options(baseline: Path, tmp_path: Path) -> None:
    guard = CountingGuard()
    preset = tmp_path / "preset.json"
    preset.write_text(json.dumps({"tier": "conservative", "guards": {"order": ["invariants"], "invariants": {"k": 3}}}))
    outcome = evaluate(
        EvaluationRequest(baseline=baseline, subject=baseline, out=tmp_path / "out", preset=preset, **QUICK),
        registries=_registries(guard),
    )
    assert outcome.exit_code == 0
    assert outcome.verdict == "PASS"
    assert len(guard.prepared) == 1
    assert guard.prepared[0].role == "baseline"
    assert guard.shapes == [(1, 64), (1, 64)]  # the two preview windows
    assert guard.contexts[0].options == {"k": 3}
    assert guard.contexts[0].tier == "conservative"
    report = outcome.report
    assert report["guards"][0]["name"] == "invariants"
    assert report["guards"][0]["passed"] is True
    assert report["validation"]["invariants_ok"] is True
    assert report["policy"]["tier"] == "conservative"
    assert report["preset"]["path"] == str(preset)


def test_failed_and_crashing_guards_make_a_fail_with_reasons(baseline: Path, tmp_path: Path) -> None:
    outcome = evaluate(
        EvaluationRequest(baseline=baseline, subject=baseline, out=tmp_path, guards=("spectral", "boom"), **QUICK),
        registries=_registries(FailingGuard(), CrashingGuard()),
    )
    assert outcome.exit_code == 1
    assert outcome.report["reasons"] == [
        "guard spectral failed: transformer.h.0.mlp.c_fc.weight: sigma 20x the baseline",
        "guard boom failed: guard: guard raised RuntimeError: singular matrix",
    ]
    assert outcome.report["validation"]["spectral_stable"] is False
    assert verify_report_file(outcome.report_path).ok


def test_default_chain_skips_missing_guards_but_explicit_unknown_is_an_error(baseline: Path, tmp_path: Path) -> None:
    outcome = evaluate(
        EvaluationRequest(baseline=baseline, subject=baseline, out=tmp_path / "a", **QUICK),
        registries=_registries(CountingGuard()),
    )
    chain = outcome.report["guard_chain"]
    assert chain["order"] == ["invariants"]
    assert chain["skipped"] == ["spectral", "rmt", "variance"]
    with pytest.raises(UsageError, match="unknown guard"):
        evaluate(
            EvaluationRequest(baseline=baseline, subject=baseline, out=tmp_path / "b", guards=("rmt",), **QUICK),
            registries=_registries(),
        )


def test_edit_spec_builds_the_subject_and_records_its_metadata(baseline: Path, tmp_path: Path) -> None:
    outcome = evaluate(
        EvaluationRequest(baseline=baseline, edit="scale_test:-1", out=tmp_path, keep_subject=True, **QUICK),
        registries=_registries(),
    )
    subject = outcome.report["subject"]
    assert subject["path"] == str(tmp_path / "subject")
    assert subject["edit_spec"] == "scale_test:-1"
    assert subject["edit"] == {
        "schema": "invarlock/evidence-pack-edit-metadata-v1",
        "scenario_id": "scale_test:-1",
        "artifact_class": "validation_subject_checkpoint",
        "edit_type": "scale_test",
        "edit": "scale_test",
        "factor": -1.0,
        "seed": 0,
    }
    assert subject["label"] == "scale_test"
    assert json.loads((tmp_path / "subject" / "edit_metadata.json").read_text())["factor"] == -1.0
    assert outcome.verdict == "FAIL"
    assert outcome.report["primary_metric"]["ratio"] > 1.1


def test_an_edited_subject_is_removed_unless_kept(baseline: Path, tmp_path: Path) -> None:
    outcome = evaluate(
        EvaluationRequest(baseline=baseline, edit="scale_test:-1", out=tmp_path, **QUICK),
        registries=_registries(),
    )
    assert not (tmp_path / "subject").exists()
    # The report still records every file digest of the subject it evaluated.
    assert "edit_metadata.json" in outcome.report["subject"]["files"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "evaluate_timing.json",
        "evaluation.report.json",
        "evaluation_report.md",
        "runtime.manifest.json",
    ]


def test_assurance_off_exits_0_on_a_fail_verdict(baseline: Path, tmp_path: Path) -> None:
    outcome = evaluate(
        EvaluationRequest(baseline=baseline, edit="scale_test:-1", out=tmp_path, assurance="off", **QUICK),
        registries=_registries(),
    )
    assert outcome.verdict == "FAIL"
    assert outcome.exit_code == 0


def test_baseline_report_is_reused_when_windows_and_baseline_match(baseline: Path, tmp_path: Path) -> None:
    first = evaluate(
        EvaluationRequest(baseline=baseline, edit="scale_test:0.9", out=tmp_path / "a", **QUICK),
        registries=_registries(),
    )
    again = evaluate(
        EvaluationRequest(
            baseline=baseline, edit="scale_test:0.9", out=tmp_path / "b", baseline_report=first.report_path, **QUICK
        ),
        registries=_registries(),
    )
    assert again.report["timings"]["baseline"]["reused_report"] is True
    assert again.report["primary_metric"]["ratio"] == first.report["primary_metric"]["ratio"]
    with pytest.raises(InputError, match="used different evaluation windows"):
        evaluate(
            EvaluationRequest(
                baseline=baseline, subject=baseline, out=tmp_path / "c", baseline_report=first.report_path,
                **{**QUICK, "seed": 5},
            ),
            registries=_registries(),
        )


def test_same_request_gives_the_same_numbers(baseline: Path, tmp_path: Path) -> None:
    runs = [
        evaluate(
            EvaluationRequest(baseline=baseline, edit="scale_test:0.95", out=tmp_path / str(i), **QUICK),
            registries=_registries(),
        ).report
        for i in range(2)
    ]
    assert runs[0]["windows"]["digest"] == runs[1]["windows"]["digest"]
    assert runs[0]["primary_metric"]["per_window"] == runs[1]["primary_metric"]["per_window"]
    assert runs[0]["digests"]["per_window"] == runs[1]["digests"]["per_window"]


def test_subject_edit_metadata_is_schema_checked_before_evaluation(baseline: Path, tmp_path: Path) -> None:
    subject = tmp_path / "subject"
    shutil.copytree(baseline, subject)
    (subject / "edit_metadata.json").write_text(json.dumps({"schema": "something-else", "scenario_id": "x"}))
    with pytest.raises(SchemaError, match=r"edit_metadata\.json does not match schema edit-metadata"):
        evaluate(EvaluationRequest(baseline=baseline, subject=subject, out=tmp_path / "out", **QUICK), registries=_registries())
    assert not (tmp_path / "out" / "evaluation.report.json").exists()


def test_request_errors(baseline: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="exactly one of --subject DIR or --edit SPEC"):
        evaluate(EvaluationRequest(baseline=baseline, out=tmp_path, **QUICK), registries=_registries())
    with pytest.raises(UsageError, match="exceeds the model's 256 positions"):
        evaluate(
            EvaluationRequest(baseline=baseline, subject=baseline, out=tmp_path, **{**QUICK, "seq_len": 300}),
            registries=_registries(),
        )
