"""The RMT and VE probe sidecars of real error injections, through ``evaluate``.

``rmt_norm_noise`` and ``ve_mlp_scale_skew`` ask for ``rmt_probe.json`` / ``ve_probe.json``
(``detection.probe`` in their edit metadata). The evaluation writes them beside the report from the
chain's own RMT / variance measurement; the documents must equal what the stand-alone
:mod:`invarlock_guards.probes` functions compute on the same models and calibration windows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from invarlock_core.canonical import canonical_json, file_sha256
from invarlock_core.datasets.provider import DatasetOptions
from invarlock_core.datasets.sample import SampleProvider
from invarlock_core.evaluation import EvaluationOutcome, EvaluationRequest, evaluate
from invarlock_core.evaluation.windows import plan_windows, tokenize_stream
from invarlock_core.guarding import ModelUnderTest
from invarlock_core.models import load_model
from invarlock_core.plugins import Registries, get_registries
from invarlock_core.report.verification import verify_report_file
from invarlock_guards.probes import rmt_probe, ve_probe

pytestmark = pytest.mark.slow

QUICK: dict[str, Any] = {"device": "cpu", "seq_len": 64, "preview_windows": 4, "final_windows": 6}


@pytest.fixture(scope="module")
def registries() -> Registries:
    regs = get_registries()
    if "rmt_norm_noise" not in regs.edits or "ve_mlp_scale_skew" not in regs.edits:
        pytest.skip("the edits plugin lacks the probe injections")
    return regs


def _evaluate(
    registries: Registries, baseline: Path, edit: str, out: Path, guards: tuple[str, ...]
) -> EvaluationOutcome:
    # The subject is reloaded afterwards (_models): keep it.
    request = EvaluationRequest(baseline=baseline, edit=edit, out=out, guards=guards, keep_subject=True, **QUICK)
    return evaluate(request, registries=registries)


def _models(report: dict[str, Any]) -> tuple[ModelUnderTest, ModelUnderTest]:
    """Baseline and subject of ``report`` on the evaluation's calibration (its preview windows)."""
    baseline = load_model(Path(report["baseline"]["path"]), device="cpu")
    subject = load_model(Path(report["subject"]["path"]), device="cpu")
    recorded = report["windows"]
    plan = plan_windows(
        tokenize_stream(baseline.tokenizer, SampleProvider().load(DatasetOptions()).texts),
        seq_len=recorded["seq_len"],
        stride=recorded["stride"],
        preview=len(recorded["preview"]),
        final=len(recorded["final"]),
        seed=recorded["seed"],
    )
    assert plan.digest == recorded["digest"]
    calibration = [torch.from_numpy(row.copy())[None, :] for row in plan.preview_ids]
    return (
        ModelUnderTest("baseline", baseline.model, baseline.path, baseline.digest, calibration),
        ModelUnderTest("subject", subject.model, subject.path, subject.digest, calibration),
    )


def _sidecar(outcome: EvaluationOutcome, name: str) -> dict[str, Any]:
    """The sidecar beside the report, checked against the report's record and canonical form."""
    path = outcome.report_path.parent / name
    data = path.read_bytes()
    document: dict[str, Any] = json.loads(data)
    assert data == canonical_json(document)
    record = outcome.report["probe"]
    assert record["file"] == name
    assert record["status"] == "written"
    assert record["sha256"] == f"sha256:{file_sha256(path)}"
    assert record["kind"] == document["kind"]
    assert not [p.name for p in path.parent.iterdir() if p.name.startswith(".")]
    verified = verify_report_file(outcome.report_path)
    assert verified.ok, verified.problems
    return document


def test_rmt_norm_noise_probe_shows_the_delta_while_rmt_stays_stable(
    registries: Registries, tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    # sigma 0.3 on the tiny LLaMA: one module leaves its epsilon band (an outlier, a warning), the
    # RMT guard stays stable and the evaluation passes; the probe still reports the delta.
    outcome = _evaluate(
        registries, tiny_model_dir("llama"), "rmt_norm_noise:0.3", tmp_path, ("invariants", "rmt")
    )
    assert outcome.verdict == "PASS"
    assert outcome.report["validation"]["rmt_stable"] is True
    document = _sidecar(outcome, "rmt_probe.json")
    assert outcome.report["probe"]["guard"] == "rmt"
    assert document["kind"] == "rmt_probe"
    assert document["schema_version"] == 1
    assert document["delta_detected"] is True
    assert document["rmt_stable"] is True
    assert document["outliers"] >= 1
    assert document["windows"] == 4
    assert document == rmt_probe(*_models(outcome.report))
    markdown = (outcome.report_path.parent / "evaluation_report.md").read_text()
    assert "Probe sidecar `rmt_probe.json` written by the rmt guard" in markdown


def test_ve_mlp_scale_skew_probe_proposes_the_inverse_scale(
    registries: Registries, tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    outcome = _evaluate(
        registries, tiny_model_dir("gpt2"), "ve_mlp_scale_skew", tmp_path, ("variance",)
    )
    document = _sidecar(outcome, "ve_probe.json")
    assert outcome.report["probe"]["guard"] == "variance"
    assert document["kind"] == "ve_probe"
    assert document["proposes_scales"] is True
    # x0.9 on the last block's c_proj weight (its bias is untouched): VE proposes about 1/0.9
    assert document["scales"] == {"transformer.h.1.mlp.c_proj": pytest.approx(1 / 0.9, rel=0.01)}
    assert document["ab"]["ran"] is True
    assert document["meaningful_improvement"] is document["ab"]["improves"]
    assert document == ve_probe(*_models(outcome.report))


def test_clean_edit_into_the_same_directory_leaves_no_probe_behind(
    registries: Registries, tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    baseline = tiny_model_dir("gpt2")
    first = _evaluate(registries, baseline, "rmt_norm_noise", tmp_path, ("rmt",))
    assert first.report["probe"]["status"] == "written"
    assert (tmp_path / "rmt_probe.json").is_file()
    clean = _evaluate(registries, baseline, "quant_rtn:8:32:ffn", tmp_path, ("rmt",))
    assert clean.report["probe"] is None
    assert not (tmp_path / "rmt_probe.json").exists()


def test_ve_probe_with_variance_left_out_of_the_chain_is_recorded_not_written(
    registries: Registries, tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    outcome = _evaluate(registries, tiny_model_dir("gpt2"), "ve_mlp_scale_skew", tmp_path, ("rmt",))
    assert outcome.report["probe"] == {
        "file": "ve_probe.json",
        "guards": ["variance"],
        "guard": None,
        "status": "skipped",
        "reason": "guard variance is not in the guard chain",
        "kind": None,
        "sha256": None,
    }
    assert not (tmp_path / "ve_probe.json").exists()
    markdown = (outcome.report_path.parent / "evaluation_report.md").read_text()
    assert "Probe sidecar `ve_probe.json` skipped: guard variance is not in the guard chain." in markdown
