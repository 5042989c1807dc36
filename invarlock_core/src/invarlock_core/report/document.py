"""The evaluation report: ``evaluation.report.json``, its digests, and reading it back.

The report records per-window numbers (token counts and NLLs), the window plan's digests, the
policy and the guard results, never token ids. Its ``digests`` section seals it:

* ``policy``: canonical digest of the ``policy`` section,
* ``windows``: the plan digest (shape, seed, every window id and token digest),
* ``per_window``: canonical digest of ``primary_metric.per_window``,
* ``report``: canonical digest of the whole report without ``digests.report``.

``invarlock verify`` recomputes all of them and the verdict (:mod:`invarlock_core.report.verification`).
"""

from __future__ import annotations

import json
import math
import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from invarlock_core.atomic import atomic_write_bytes, atomic_write_text
from invarlock_core.canonical import canonical_digest, prefixed, sha256_hex
from invarlock_core.evaluation.policy import policy_digest
from invarlock_core.evaluation.verdict import GuardOutcome, WindowScore
from invarlock_core.guarding import GuardResult
from invarlock_core.json_files import read_json_object
from invarlock_core.schema_validation import validate_instance

__all__ = [
    "MARKDOWN_FILENAME",
    "REPORT_FILENAME",
    "REPORT_SET",
    "RUNTIME_MANIFEST_FILENAME",
    "SCHEMA_NAME",
    "TIMING_FILENAME",
    "compute_digests",
    "guard_outcomes",
    "guard_result_json",
    "jsonable",
    "load_report",
    "report_digest",
    "runtime_manifest_body",
    "runtime_manifest_digest",
    "window_scores",
    "write_report",
]

REPORT_FILENAME = "evaluation.report.json"
MARKDOWN_FILENAME = "evaluation_report.md"
TIMING_FILENAME = "evaluate_timing.json"
RUNTIME_MANIFEST_FILENAME = "runtime.manifest.json"
SCHEMA_NAME = "evaluation-report"


def jsonable(value: Any) -> Any:
    """JSON-ready copy of ``value``: NumPy scalars unwrapped, NaN/Inf as ``None``, tuples as lists."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [jsonable(v) for v in items]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item") and callable(value.item):  # NumPy / torch scalars
        try:
            return jsonable(value.item())
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, Path):
        return str(value)
    return str(value)


def guard_result_json(result: GuardResult) -> dict[str, Any]:
    """A guard result as recorded in the report's ``guards`` list."""
    return {
        "name": result.name,
        "passed": bool(result.passed),
        "severity": result.severity,
        "metrics": jsonable(result.metrics),
        "violations": [jsonable(attrs.asdict(v)) for v in result.violations],
        "thresholds": jsonable(result.thresholds),
        "details": jsonable(result.details),
        "seconds": float(result.seconds),
    }


def guard_outcomes(guards: Sequence[Mapping[str, Any]]) -> list[GuardOutcome]:
    """What the verdict needs from the recorded ``guards`` list."""
    outcomes = []
    for guard in guards:
        messages = tuple(
            f"{v.get('target', '?')}: {v.get('message', '')}"
            for v in guard.get("violations", [])
            if v.get("severity", "fail") == "fail"
        )
        outcomes.append(GuardOutcome(name=str(guard["name"]), passed=bool(guard["passed"]), violations=messages))
    return outcomes


def window_scores(records: Sequence[Mapping[str, Any]]) -> list[WindowScore]:
    """Recorded per-window entries back into :class:`WindowScore` values."""
    return [
        WindowScore(
            id=str(r["id"]),
            tokens=int(r["tokens"]),
            baseline_nll=float(r["baseline_nll"]),
            subject_nll=None if r["subject_nll"] is None else float(r["subject_nll"]),
        )
        for r in records
    ]


def report_digest(report: Mapping[str, Any]) -> str:
    """Canonical digest of ``report`` with ``digests.report`` left out."""
    body = dict(report)
    digests = dict(body.get("digests") or {})
    digests.pop("report", None)
    body["digests"] = digests
    return prefixed(canonical_digest(body))


def compute_digests(report: Mapping[str, Any]) -> dict[str, str]:
    """Every digest of the ``digests`` section, recomputed from ``report``."""
    digests = {
        "policy": policy_digest(report["policy"]),
        "windows": str(report["windows"]["digest"]),
        "per_window": prefixed(canonical_digest(report["primary_metric"]["per_window"])),
    }
    sealed = {**report, "digests": digests}
    digests["report"] = report_digest(sealed)
    return digests


def runtime_manifest_body(report: Mapping[str, Any]) -> dict[str, Any]:
    """Runtime provenance written beside every report (evidence packs require it), without its
    back-reference to the report's digests."""
    return {
        "schema": "invarlock/runtime-manifest-v1",
        "execution_mode": "host",
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "environment": report["environment"],
    }


def runtime_manifest_digest(manifest: Mapping[str, Any]) -> str:
    """What a report records for its runtime manifest: the canonical digest of everything but
    ``report_digests`` (which points back at the report and so cannot be inside its seal)."""
    return prefixed(canonical_digest({k: v for k, v in manifest.items() if k != "report_digests"}))


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, sort_keys=True, indent=2, allow_nan=False) + "\n").encode("utf-8")


def write_report(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """Bind the sidecars, seal, schema-validate and atomically write the report, its Markdown,
    the timing file and the runtime manifest.

    The report records (``sidecars``) the sha256 of the timing file and the digest of the runtime
    manifest; the manifest and the Markdown carry the report's digests back.
    """
    from invarlock_core.report.markdown import render_markdown

    timing = _json_bytes({"schema_version": 1, "verdict": report["verdict"], "timings": report["timings"]})
    manifest = runtime_manifest_body(report)
    report["sidecars"] = {
        TIMING_FILENAME: prefixed(sha256_hex(timing)),
        RUNTIME_MANIFEST_FILENAME: runtime_manifest_digest(manifest),
    }
    report["digests"] = compute_digests(report)
    validate_instance(report, SCHEMA_NAME, what="evaluation report")
    markdown_path = atomic_write_text(out / MARKDOWN_FILENAME, render_markdown(report))
    atomic_write_bytes(out / TIMING_FILENAME, timing)
    atomic_write_bytes(out / RUNTIME_MANIFEST_FILENAME, _json_bytes({**manifest, "report_digests": report["digests"]}))
    # The report is written last: its presence means the evaluation completed.
    report_path = atomic_write_bytes(out / REPORT_FILENAME, _json_bytes(report))
    return report_path, markdown_path


REPORT_SET = frozenset({REPORT_FILENAME, MARKDOWN_FILENAME, TIMING_FILENAME, RUNTIME_MANIFEST_FILENAME})
"""The files every evaluation writes into its report directory (probe sidecars come on top)."""


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a report file; unreadable files and invalid JSON raise :class:`InputError` (exit 2)."""
    file = Path(path)
    if file.is_dir():
        file = file / REPORT_FILENAME
    return read_json_object(file, what="report")
