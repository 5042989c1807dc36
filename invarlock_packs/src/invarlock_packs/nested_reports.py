"""Bundled evaluation reports: nested verification through the core, identity, and summaries.

Nested verification always goes through the core's own verifier,
:func:`invarlock_core.report_verification.verify_report_file`; this module adapts its result and
fails closed when the verifier is unavailable. Identity and summary extraction only read JSON.
"""

from __future__ import annotations

import multiprocessing
import os
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import attrs

from invarlock_core.errors import InvarlockError
from invarlock_packs.verdict_rules import acceptance_bound

__all__ = [
    "GuardSummary",
    "ReportOutcome",
    "ReportSummary",
    "check_profile",
    "slug",
    "summarize_report",
    "verify_report",
    "verify_reports",
]

_SLUG_UNSAFE = re.compile(r"[^a-z0-9._-]+")


@attrs.frozen
class ReportOutcome:
    """The core verifier's answer for one report."""

    path: Path
    ok: bool
    exit_code: int
    problems: tuple[str, ...]


def check_profile(profile: str | None) -> None:
    """Raise the core's one-line UsageError for an unknown report verification profile."""
    if profile is not None:
        from invarlock_core.policy import load_profile

        load_profile(profile)


def verify_report(path: Path, *, profile: str | None = None) -> ReportOutcome:
    """Verify one ``evaluation.report.json`` with the core's verifier (fail closed)."""
    try:
        from invarlock_core.report_verification import verify_report_file
    except ImportError as exc:
        return ReportOutcome(
            path, False, 7, (f"the core report verifier is unavailable ({exc}); failing closed",)
        )
    try:
        result = verify_report_file(path, profile=profile)
    except InvarlockError as exc:
        return ReportOutcome(path, False, exc.exit_code, (str(exc),))
    return ReportOutcome(path, bool(result.ok), int(result.exit_code), tuple(result.problems))


_PARALLEL_MIN_REPORTS = 32


def _verify_chunk(paths: list[Path], profile: str | None) -> list[ReportOutcome]:
    return [verify_report(path, profile=profile) for path in paths]


def verify_reports(
    paths: Sequence[Path], *, profile: str | None = None, workers: int | None = None
) -> list[ReportOutcome]:
    """Verify many reports, in ``workers`` forked processes when there are enough of them.

    The core verifier is pure Python and NumPy, so separate processes are what scales it. The
    default uses every CPU (at most 8); ``workers=1`` verifies in this process. Forking is used only
    where the platform offers it; elsewhere the reports are verified in this process.
    """
    count = min(8, os.cpu_count() or 1) if workers is None else max(1, workers)
    methods = multiprocessing.get_all_start_methods()
    if count <= 1 or len(paths) < _PARALLEL_MIN_REPORTS or "fork" not in methods:
        return _verify_chunk(list(paths), profile)
    chunks = [list(paths[index::count]) for index in range(count)]
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=count, mp_context=context) as pool:
        results = list(pool.map(_verify_chunk, chunks, [profile] * count))
    by_path = {outcome.path: outcome for chunk in results for outcome in chunk}
    return [by_path[path] for path in paths]


def slug(value: str) -> str:
    """A safe single path component for a model, edit or run name (``org/model`` -> ``org__model``)."""
    text = _SLUG_UNSAFE.sub("-", value.strip().lower().replace("/", "__")).strip("-")
    if not text or set(text) <= {"."}:
        return "unnamed"
    return text[:120]


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _first_str(data: Any, *paths: tuple[str, ...]) -> str | None:
    for path in paths:
        value = _dig(data, *path)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@attrs.frozen
class GuardSummary:
    """One guard's outcome in one report, for tables and charts."""

    name: str
    status: str
    value: float | None


@attrs.frozen
class ReportSummary:
    """What the README and the HTML page show about one report."""

    model: str
    edit: str
    run: str
    category: str
    verdict: str
    metric: str | None
    ratio: float | None
    ci_low: float | None
    ci_high: float | None
    guards: tuple[GuardSummary, ...]
    bound: float | None = None
    """The acceptance bound (upper end plus tolerance) the ratio was gated against."""


def _guards(report: Mapping[str, Any]) -> tuple[GuardSummary, ...]:
    raw = report.get("guards")
    result = []
    for index, guard in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(guard, Mapping):
            continue
        status = guard.get("severity")
        if not isinstance(status, str):
            passed = guard.get("passed")
            status = "pass" if passed is True else "fail" if passed is False else "unknown"
        metrics = guard.get("metrics")
        value = _number(metrics.get("violations_total")) if isinstance(metrics, Mapping) else None
        if value is None and isinstance(guard.get("violations"), list):
            value = float(len(guard["violations"]))
        name = guard.get("name")
        result.append(GuardSummary(str(name) if name else f"guard{index}", status.lower(), value))
    return tuple(sorted(result, key=lambda g: g.name))


def _model_name(data: Mapping[str, Any]) -> str | None:
    """The baseline's directory name; for a Hugging Face cache snapshot, the repository id."""
    path = _first_str(data, ("baseline", "path"))
    if not path:
        return None
    parts = Path(path).parts
    for part in parts:
        if part.startswith("models--"):
            return part[len("models--") :].replace("--", "/")
    return parts[-1] if parts else None


def summarize_report(
    report: Any,
    *,
    model: str | None = None,
    edit: str | None = None,
    run: str = "run1",
    category: str | None = None,
) -> ReportSummary:
    """Summarise a parsed evaluation report; explicit ``model``/``edit``/``category`` win.

    The model is named by the baseline checkpoint directory, the edit by the subject's label.
    """
    data: Mapping[str, Any] = report if isinstance(report, Mapping) else {}
    metric = data.get("primary_metric")
    metric_map: Mapping[str, Any] = metric if isinstance(metric, Mapping) else {}
    ci = metric_map.get("ci")
    ci_pair = ci if isinstance(ci, list) and len(ci) == 2 else [None, None]
    verdict = _first_str(data, ("verdict",)) or "UNKNOWN"
    return ReportSummary(
        model=model or _model_name(data) or "model",
        edit=edit or _first_str(data, ("subject", "label"), ("subject", "edit_spec")) or "edit",
        run=run,
        category=category or "clean",
        verdict=verdict.upper(),
        metric=_first_str(metric_map, ("name",)),
        ratio=_number(metric_map.get("ratio")),
        ci_low=_number(ci_pair[0]),
        ci_high=_number(ci_pair[1]),
        guards=_guards(data),
        bound=acceptance_bound(data),
    )
