"""A real suite run directory for the verdict tests, laid out as the suite engineer's contract says.

Subjects are real edits and error injections of tiny checkpoints (``invarlock_edits``), every
report comes from a real ``evaluate`` against the model's baseline, and each report directory
gets the subject's ``edit_metadata.json`` beside it, as the suite's EVALUATE tasks leave it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from packhelpers import write_json

SETTINGS: dict[str, Any] = {
    "device": "cpu",
    "seq_len": 64,
    "stride": 64,
    "preview_windows": 2,
    "final_windows": 8,
    "bootstrap_replicates": 200,
    "batch_size": 8,
}


def _scenario(
    id: str, kind: str, edit: str, artifact_class: str, runs: int, guard: str | None = None
) -> dict[str, Any]:
    return {
        "id": id,
        "kind": kind,
        "category": kind,
        "edit_type": edit.split(":")[0],
        "edit": edit,
        "artifact_class": artifact_class,
        "intent": f"{kind} scenario {id}",
        "primary_guard": guard,
        "runs": runs,
        "suites": None,
    }


_SUBJECT = "validation_subject_checkpoint"
_FIXTURE = "fault_injection_fixture"
SCENARIOS: list[dict[str, Any]] = [
    _scenario("quant_8bit_clean", "clean", "quant_rtn:8:32:ffn", _SUBJECT, 2),
    _scenario("prune_50_stress", "stress_required_fail", "magnitude_prune:0.5:all", _SUBJECT, 1),
    _scenario("quant_4bit_stress", "stress_informational", "quant_rtn:4:32:all", _SUBJECT, 1),
    _scenario("svd_rank4_stress", "stress_informational", "lowrank_svd:4:all", _SUBJECT, 1),
    _scenario("nan_injection", "error_must_detect", "nan_injection", _FIXTURE, 1, "invariants"),
    _scenario("rmt_norm_noise", "error_informational", "rmt_norm_noise", _FIXTURE, 1, "rmt"),
    _scenario(
        "spectral_moderate_scale",
        "error_informational",
        "spectral_moderate_scale",
        _FIXTURE,
        1,
        "spectral",
    ),
]
"""Expected on both tiny models: clean PASS, prune FAIL, one of two informational stress runs
FAIL (SVD), nan detected, both informational errors FAIL (rmt_norm_noise by the per-tensor
comparison): an overall PASS."""


def _evaluate(baseline: Path, subject: Path, out: Path, baseline_report: Path | None) -> Path:
    from invarlock_core.evaluation import EvaluationRequest, evaluate

    request = EvaluationRequest(
        baseline=baseline, subject=subject, out=out, baseline_report=baseline_report, **SETTINGS
    )
    return evaluate(request).report_path


def _subject(baseline: Path, scenario: dict[str, Any], out: Path) -> Path:
    from invarlock_core.editing import EditSpec
    from invarlock_core.plugins import get_registries
    from invarlock_edits import apply_edit

    spec = EditSpec.parse(scenario["edit"])
    apply_edit(
        get_registries().edits.get(spec.name),
        spec,
        baseline=baseline,
        out=out,
        seed=0,
        scenario_id=scenario["id"],
        category=scenario["kind"],
    )
    return out


def report_dirs(slug: str, scenario: dict[str, Any]) -> list[str]:
    """Run-directory-relative report directories of one scenario on one model."""
    if scenario["kind"].startswith("error_"):
        return [f"{slug}/reports/errors/{scenario['id']}"]
    return [f"{slug}/reports/{scenario['id']}/run_{n}" for n in range(1, scenario["runs"] + 1)]


def build_run(out: Path, models: dict[str, Path], work: Path) -> Path:
    """Evaluate every scenario on every model into the suite layout at ``out``."""
    write_json(
        out / "state/scenarios.json",
        {"format": "invarlock-suite-scenarios-v1", "scenarios": SCENARIOS},
    )
    write_json(
        out / "state/models.json",
        {"models": [{"slug": s, "source": str(p), "revision": None} for s, p in models.items()]},
    )
    for slug, baseline in models.items():
        base_report = _evaluate(baseline, baseline, out / slug / "reports/baseline", None)
        for scenario in SCENARIOS:
            subject = _subject(baseline, scenario, work / slug / scenario["id"])
            for rel in report_dirs(slug, scenario):
                _evaluate(baseline, subject, out / rel, base_report)
                shutil.copyfile(subject / "edit_metadata.json", out / rel / "edit_metadata.json")
    return out


def move_report(source: Path, target: Path) -> None:
    """Put the real report of ``source`` (with the sidecars it binds) in ``target``; ``target``'s
    edit metadata stays, so the report now stands for ``target``'s scenario."""
    for item in source.iterdir():
        if item.is_file() and item.name != "edit_metadata.json":
            shutil.copyfile(item, target / item.name)


def edit_json(path: Path, change: Any) -> None:
    """Apply ``change(document)`` to a JSON file in place."""
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    write_json(path, data)


def run_reports(run: Path) -> list[Any]:
    """Every scenario report of a run, as ``build_pack`` inputs named the way the suite names them."""
    from invarlock_packs import ReportInput

    models = json.loads((run / "state/models.json").read_text())["models"]
    return [
        ReportInput(path=run / rel / "evaluation.report.json", model=m["slug"], run=Path(rel).name)
        for m in models
        for scenario in SCENARIOS
        for rel in report_dirs(m["slug"], scenario)
    ]


def build_suite_pack(
    run: Path, out: Path, key: Any, *, final_verdict: Path | None = None, **extra: Any
) -> Path:
    """Build and sign a pack of ``run`` (its verdict, sidecars, reports and scenario manifest)."""
    from invarlock_packs import build_pack

    reports_dir = run / "reports"
    summaries = sorted(p for p in reports_dir.glob("*.json") if p.name != "final_verdict.json")
    return build_pack(
        out,
        final_verdict=final_verdict or reports_dir / "final_verdict.json",
        reports=run_reports(run),
        signing_key=key.private_key_path,
        metadata={"scenarios": run / "state/scenarios.json"},
        summaries=summaries,
        **extra,
    ).path
