"""``analysis/evaluation_optimization_summary.json``: evaluation telemetry of a run (R-03).

Every run writes it. It counts the ``evaluate_timing.json`` files found under the models' report
directories, how many evaluations reused the baseline report instead of scoring the baseline again,
how many deferred optional rendering, and totals of the nested timings (load, windows, scoring,
guards). It is scheduling and regression telemetry, not a throughput claim.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from invarlock_core.atomic import atomic_write_json
from invarlock_core.json_files import read_json
from invarlock_packs.suite.run_layout import RunLayout

__all__ = ["SUMMARY_NAME", "timing_files", "write_optimization_summary"]

SUMMARY_NAME: Final = "evaluation_optimization_summary.json"
_TIMING: Final = "evaluate_timing.json"


def timing_files(layout: RunLayout, slugs: list[str]) -> Iterator[Path]:
    for slug in slugs:
        yield from sorted((layout.root / slug / "reports").rglob(_TIMING))


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
