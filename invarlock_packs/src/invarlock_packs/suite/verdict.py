"""A suite run's final verdict (S-24/S-25): compiled from its reports, written with its sidecars.

:func:`compile_final_verdict` reads ``OUT/state/scenarios.json``, ``OUT/state/models.json`` and
every report under ``OUT/<model>/reports/`` and applies the rules of
:mod:`invarlock_packs.verdict_rules`. :func:`write_verdict_outputs` publishes
``OUT/reports/`` as one set: ``final_verdict.json`` (schema ``final-verdict``),
``final_verdict.txt`` and every sidecar are staged in a hidden sibling and swapped in together,
so a reader sees the old set or the new one, never a mix.

>>> verdict = compile_final_verdict(Path("runs/tiny"))
>>> paths = write_verdict_outputs(Path("runs/tiny"), verdict)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import attrs

from invarlock_core.atomic import atomic_write_bytes, staged_directory
from invarlock_core.errors import UsageError
from invarlock_core.schema_validation import validate_instance
from invarlock_packs.suite.verdict_inputs import RunEvidence, load_run
from invarlock_packs.suite.verdict_sidecars import sidecar_documents
from invarlock_packs.verdict_rules import (
    Criteria,
    FinalVerdict,
    ScenarioOutcome,
    VerdictCounts,
    decide,
)

__all__ = [
    "FINAL_VERDICT_JSON",
    "FINAL_VERDICT_TXT",
    "REPORTS_DIR",
    "Criteria",
    "FinalVerdict",
    "ScenarioOutcome",
    "VerdictCounts",
    "compile_final_verdict",
    "render_verdict_text",
    "verdict_from_evidence",
    "write_verdict_outputs",
]

REPORTS_DIR: Final = "reports"
"""``OUT/reports/``: the final verdict and its sidecars, and nothing else."""
FINAL_VERDICT_JSON: Final = "final_verdict.json"
FINAL_VERDICT_TXT: Final = "final_verdict.txt"


def verdict_from_evidence(
    evidence: RunEvidence, *, informational_min_fraction: float = 0.5
) -> FinalVerdict:
    """The final verdict of already-loaded run evidence."""
    if not 0.0 <= informational_min_fraction <= 1.0:
        raise UsageError(
            f"informational minimum fail fraction {informational_min_fraction} is not in [0, 1]"
        )
    return decide(
        evidence.rules,
        (loaded.observation for loaded in evidence.reports),
        evidence.models,
        informational_min_fraction=informational_min_fraction,
    )


def compile_final_verdict(
    run_dir: Path, *, informational_min_fraction: float = 0.5
) -> FinalVerdict:
    """Compile the final verdict of the suite run at ``run_dir`` from its reports."""
    return verdict_from_evidence(
        load_run(run_dir), informational_min_fraction=informational_min_fraction
    )


def render_verdict_text(verdict: FinalVerdict) -> str:
    """``final_verdict.txt``: the verdict on the first line, then criteria, counts and failures."""
    criteria = verdict.criteria
    lines = [verdict.verdict, ""]
    lines += [
        f"{name}: {'yes' if value else 'NO'}"
        for name, value in _json(criteria).items()
        if isinstance(value, bool)
    ]
    lines.append(
        f"informational minimum fail fraction: {criteria.informational_stress_min_fail_fraction:g}"
    )
    lines += ["", "counts:"]
    lines += [f"  {name}: {value}" for name, value in _json(verdict.counts).items()]
    if verdict.failed_requirements:
        lines += ["", *(f"failed: {item}" for item in verdict.failed_requirements)]
    return "\n".join(lines) + "\n"


def _json(record: Criteria | VerdictCounts) -> dict[str, Any]:
    return attrs.asdict(record)


def _dump(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def write_verdict_outputs(run_dir: Path, verdict: FinalVerdict) -> list[Path]:
    """Write ``OUT/reports/``: the final verdict (JSON and text) and every sidecar, as one set.

    Returns the written paths (final locations), ``final_verdict.json`` first.
    """
    evidence = load_run(run_dir)
    document = verdict.to_json()
    validate_instance(document, "final-verdict", "invarlock_packs", what="final verdict")
    files = {
        FINAL_VERDICT_JSON: _dump(document),
        FINAL_VERDICT_TXT: render_verdict_text(verdict).encode(),
        **{name: _dump(doc) for name, doc in sidecar_documents(verdict, evidence).items()},
    }
    target = Path(run_dir) / REPORTS_DIR
    with staged_directory(target, overwrite=True) as stage:
        for name, data in files.items():
            atomic_write_bytes(stage / name, data)
    return [target / name for name in files]
