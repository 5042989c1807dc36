"""The spectral guard takes the matrices of bit-identical parameters from the baseline: the
result is the one a full measurement gives, on real edited checkpoints."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest

from invarlock_core.editing import EditSpec
from invarlock_core.evaluation import EvaluationRequest, evaluate
from invarlock_core.evaluation.unchanged_tensors import unchanged_parameters
from invarlock_core.guarding import GuardContext, ModelUnderTest
from invarlock_core.models import load_model
from invarlock_core.plugins import get_registries
from invarlock_guards.spectral import SpectralGuard
from invarlock_guards.weight_matrices import weight_matrices


def _edited(baseline: Path, spec: str, out: Path) -> Path:
    out.mkdir()
    get_registries().edits.get(spec.split(":")[0]).apply(
        EditSpec.parse(spec), baseline=baseline, out=out, seed=0
    )
    return out


@pytest.mark.parametrize(
    ("arch", "spec"),
    [("llama", "quant_rtn:bits=8:scope=ffn"), ("mixtral", "scale_explosion:factor=20")],
)
def test_reused_spectra_equal_measured_ones(
    arch: str, spec: str, tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    baseline_dir = tiny_model_dir(arch)
    subject_dir = _edited(baseline_dir, spec, tmp_path / "subject")
    baseline = load_model(baseline_dir, device="cpu")
    subject = load_model(subject_dir, device="cpu")
    unchanged = unchanged_parameters(subject.model, baseline_dir, subject_dir)
    matrices = weight_matrices(subject.model)
    kept = {m.name for m in matrices if m.parameter in unchanged}
    assert kept
    assert len(kept) < len(matrices)

    guard, context = SpectralGuard(), GuardContext()
    state = guard.prepare(
        ModelUnderTest("baseline", baseline.model, baseline_dir, baseline.digest), context
    )
    results = [
        guard.validate(
            ModelUnderTest("subject", subject.model, subject_dir, "s", unchanged=claimed),
            state,
            context,
        )
        for claimed in (unchanged, frozenset())
    ]
    reused, measured = results
    assert reused.metrics["reused_unchanged"] == len(kept)
    assert measured.metrics["reused_unchanged"] == 0
    assert reused.passed == measured.passed
    assert [(v.target, v.severity) for v in reused.violations] == [
        (v.target, v.severity) for v in measured.violations
    ]
    rows = {row["module"]: row for row in reused.details["top_modules"]}
    for row in measured.details["top_modules"]:
        for key in ("sigma_ratio", "stable_rank_ratio", "norm_ratio", "relative_change"):
            assert math.isclose(rows[row["module"]][key], row[key], rel_tol=1e-5, abs_tol=1e-7)


@pytest.mark.slow
def test_evaluate_reports_the_reused_matrices(
    tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    baseline = tiny_model_dir("llama")
    outcome = evaluate(
        EvaluationRequest(
            baseline=baseline,
            edit="quant_rtn:bits=8:scope=ffn",
            out=tmp_path / "out",
            device="cpu",
            seq_len=64,
            preview_windows=2,
            final_windows=6,
        )
    )
    spectral = next(g for g in outcome.report["guards"] if g["name"] == "spectral")
    model = load_model(baseline, device="cpu").model
    ffn = {m.name for m in weight_matrices(model) if m.family == "ffn"}
    assert spectral["metrics"]["reused_unchanged"] == len(weight_matrices(model)) - len(ffn)
