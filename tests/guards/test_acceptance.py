"""Acceptance: real injections from invarlock_edits through ``evaluate`` and the guard chain.

Subjects are real checkpoints written by the registered edits; ``evaluate`` runs the whole paired
evaluation (primary metric + guard chain) and must exit 1 through the guard meant to catch each
must-detect injection, and 0 for clean edits.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from guards_support import Loaded, failed, load_for_guards, run_guards

from invarlock_core.editing import EditSpec
from invarlock_core.evaluation import EvaluationRequest, evaluate
from invarlock_core.models import load_model
from invarlock_core.plugins import Registries, get_registries

pytestmark = pytest.mark.slow

MUST_DETECT = {
    "nan_injection": "invariants",
    "inf_injection": "invariants",
    "shape_mismatch": "invariants",
    "missing_tensors": "invariants",
    "weight_tying_break": "invariants",
    "extreme_quant": "spectral",
    "scale_explosion": "spectral",
    "rank_collapse": "spectral",
    "norm_collapse": "spectral",
}
CLEAN = ("quant_rtn:8:32:ffn", "magnitude_prune:0.1:ffn", "gaussian_noise")


@pytest.fixture(scope="module")
def registries() -> Registries:
    regs = get_registries()
    missing = [name for name in MUST_DETECT if name not in regs.edits]
    if missing:
        pytest.skip(f"edits plugin lacks {missing}")
    return regs


@pytest.fixture(scope="module")
def edited(
    registries: Registries, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[Path, str], Path]:
    root = tmp_path_factory.mktemp("edited")
    made: dict[tuple[Path, str], Path] = {}

    def make(baseline: Path, spec: str) -> Path:
        key = (baseline, spec)
        if key not in made:
            out = root / f"{baseline.name}-{spec.replace(':', '_')}"
            out.mkdir()
            parsed = EditSpec.parse(spec)
            registries.edits.get(parsed.name).apply(parsed, baseline=baseline, out=out, seed=0)
            made[key] = out
        return made[key]

    return make


def _evaluate(
    baseline: Path, subject: Path, out: Path, registries: Registries
) -> dict[str, object]:
    outcome = evaluate(
        EvaluationRequest(
            baseline=baseline,
            subject=subject,
            out=out,
            device="cpu",
            preview_windows=2,
            final_windows=4,
        ),
        registries=registries,
    )
    return {"exit": outcome.exit_code, "report": outcome.report}


@pytest.mark.parametrize("injection", sorted(MUST_DETECT))
def test_must_detect_injections_fail_evaluate_through_their_guard(
    tiny_model_dir: Callable[[str], Path],
    edited: Callable[[Path, str], Path],
    registries: Registries,
    tmp_path: Path,
    injection: str,
) -> None:
    baseline = tiny_model_dir("gpt2")
    result = _evaluate(baseline, edited(baseline, injection), tmp_path, registries)
    report = result["report"]
    assert isinstance(report, dict)
    assert result["exit"] == 1
    guards = {g["name"]: g for g in report["guards"]}
    assert guards[MUST_DETECT[injection]]["passed"] is False
    assert any(MUST_DETECT[injection] in reason for reason in report["reasons"])


@pytest.mark.parametrize("spec", CLEAN)
def test_clean_edits_pass_evaluate(
    tiny_model_dir: Callable[[str], Path],
    edited: Callable[[Path, str], Path],
    registries: Registries,
    tmp_path: Path,
    spec: str,
) -> None:
    baseline = tiny_model_dir("gpt2")
    result = _evaluate(baseline, edited(baseline, spec), tmp_path, registries)
    report = result["report"]
    assert isinstance(report, dict)
    assert all(g["passed"] for g in report["guards"]), [
        g["violations"][:1] for g in report["guards"]
    ]
    assert report["validation"]["guards_ok"] is True


@pytest.mark.parametrize("arch", ["llama", "mixtral"])
def test_injections_are_caught_by_their_guard_on_other_architectures(
    tiny_model_dir: Callable[[str], Path], edited: Callable[[Path, str], Path], arch: str
) -> None:
    baseline = tiny_model_dir(arch)
    model = load_for_guards(baseline, arch)
    for injection, guard in MUST_DETECT.items():
        subject = load_model(edited(baseline, injection), device="cpu").model
        assert guard in failed(run_guards(model, subject)), (arch, injection)
    for spec in CLEAN:
        subject = load_model(edited(baseline, spec), device="cpu").model
        assert failed(run_guards(model, subject)) == set(), (arch, spec)


def test_scaled_and_truncated_ffn_fail_while_the_primary_metric_passes(
    guard_model: Callable[[str], Loaded], registries: Registries, tmp_path: Path
) -> None:
    import torch
    from guards_support import damaged, low_rank_, matrices

    model = guard_model("gpt2")
    name = next(iter(matrices(model.loaded.model)))
    cases = {
        "x20": lambda m: dict(m.named_parameters())[name].mul_(20.0),
        "rank4": lambda m: [low_rank_(p, 4) for p in matrices(m).values()],
    }
    for label, damage in cases.items():
        subject_dir = tmp_path / label
        damaged(model.loaded.model, damage).save_pretrained(subject_dir, safe_serialization=True)
        model.loaded.tokenizer.save_pretrained(subject_dir)
        report = _evaluate(model.loaded.path, subject_dir, tmp_path / f"{label}-out", registries)[
            "report"
        ]
        assert isinstance(report, dict)
        assert report["verdict"] == "FAIL", label
        assert report["validation"]["spectral_stable"] is False, label
        if label == "x20":  # one scaled matrix of a tiny model barely moves perplexity
            assert report["validation"]["primary_metric_ok"] is True
    del torch


def test_twenty_seeded_noop_runs_raise_no_guard_failure(
    tiny_model_dir: Callable[[str], Path],
) -> None:
    """Guard-only noop runs on preloaded models; each seed draws other windows and start vectors."""
    import torch

    from invarlock_core.evaluation.windows import plan_windows, tokenize_stream
    from invarlock_core.testing import sample_text

    models = {
        arch: load_for_guards(tiny_model_dir(arch), arch) for arch in ("gpt2", "llama", "mixtral")
    }
    failures = []
    for seed in range(20):
        arch = ("gpt2", "llama", "mixtral")[seed % 3]
        base = models[arch]
        stream = tokenize_stream(base.loaded.tokenizer, [sample_text()])
        plan = plan_windows(stream, seq_len=64, preview=8, final=1, seed=seed)
        windows = [torch.from_numpy(row.copy())[None, :] for row in plan.preview_ids]
        seeded = Loaded(arch, base.loaded, windows)
        results = run_guards(seeded, seed=seed)
        failures.extend((seed, arch, n) for n, r in results.items() if r.severity != "pass")
    assert failures == []
