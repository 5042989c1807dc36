"""``analysis/``: evaluation telemetry of a run (R-03) and the determinism-repeats summary (S-23).

Every run writes it. It counts the ``evaluate_timing.json`` files found under the models' report
directories, how many evaluations reused the baseline report instead of scoring the baseline again,
how many deferred optional rendering, and totals of the nested timings (load, windows, scoring,
guards). It is scheduling and regression telemetry, not a throughput claim.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from invarlock_core.atomic import atomic_write_json
from invarlock_core.json_files import read_json
from invarlock_packs.suite.run_layout import RunLayout

__all__ = [
    "REPEATS_NAME",
    "SUMMARY_NAME",
    "timing_files",
    "write_determinism_repeats",
    "write_optimization_summary",
]

SUMMARY_NAME: Final = "evaluation_optimization_summary.json"
REPEATS_NAME: Final = "determinism_repeats.json"
_TIMING: Final = "evaluate_timing.json"


def timing_files(layout: RunLayout, slugs: list[str]) -> Iterator[Path]:
    for slug in slugs:
        for part in ("reports", "repeats"):
            yield from sorted((layout.root / slug / part).rglob(_TIMING))


def _add(totals: dict[str, float], prefix: str, timings: Mapping[str, Any]) -> None:
    for key, value in timings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            _add(totals, f"{name}.", value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            totals[name] = totals.get(name, 0.0) + float(value)


def write_optimization_summary(layout: RunLayout, slugs: list[str]) -> Path:
    files = list(timing_files(layout, slugs))
    totals: dict[str, float] = {}
    reused = 0
    for path in files:
        timings = dict(read_json(path, what="evaluation timing").get("timings", {}))
        reused += bool(timings.get("baseline", {}).get("reused_report"))
        _add(totals, "", timings)
    summary = {
        "format": "invarlock-evaluation-optimization-summary-v1",
        "timing_files": len(files),
        "baseline_report_reuse": {"reused": reused, "scored": len(files) - reused},
        "deferred_render": {"deferred": 0, "rendered": len(files)},
        "timing_totals_s": {key: round(value, 6) for key, value in sorted(totals.items())},
        "note": "telemetry of this run's evaluations; not a throughput claim",
    }
    return atomic_write_json(layout.analysis / SUMMARY_NAME, summary)


def _ratio(path: Path) -> tuple[str, float | None]:
    report = dict(read_json(path, what="evaluation report"))
    ratio = report.get("primary_metric", {}).get("ratio")
    return str(report.get("verdict")), float(ratio) if isinstance(ratio, int | float) else None


def write_determinism_repeats(layout: RunLayout, slugs: list[str], scenario: str) -> Path:
    """``analysis/determinism_repeats.json``: run 1 of ``scenario`` and its repeats, with their drift.

    ``max_abs_log_ratio_drift`` is the largest ``|ln r_k - ln r_1|`` over the repeats (0 on a
    deterministic device); ``identical`` says every repeat reproduced run 1's ratio and verdict.
    """
    models = []
    for slug in slugs:
        reference = layout.report_dir(slug, scenario, 1, error=False) / "evaluation.report.json"
        repeats = sorted(
            (layout.root / slug / "repeats" / scenario).glob("repeat_*/evaluation.report.json")
        )
        if not reference.is_file() or not repeats:
            continue
        runs = [_ratio(reference), *(_ratio(p) for p in repeats)]
        logs = [math.log(r) for _, r in runs if r is not None and r > 0]
        drift = max((abs(x - logs[0]) for x in logs), default=0.0) if logs else None
        models.append(
            {
                "model": slug,
                "scenario": scenario,
                "runs": [{"verdict": v, "ratio": r} for v, r in runs],
                "max_abs_log_ratio_drift": drift,
                "identical": len(set(runs)) == 1,
            }
        )
    document = {"format": "invarlock-determinism-repeats-v1", "models": models}
    return atomic_write_json(layout.analysis / REPEATS_NAME, document)
