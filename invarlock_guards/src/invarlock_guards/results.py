"""Turning a guard's findings into a :class:`~invarlock_core.guarding.GuardResult`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from invarlock_core.guarding import GuardResult, Severity, Violation

__all__ = ["MAX_LISTED", "guard_result", "overall_severity"]

MAX_LISTED = 50
"""At most this many violations are listed in a result (the count is always in the metrics)."""

_RANK: dict[Severity, int] = {"pass": 0, "warn": 1, "fail": 2}


def overall_severity(violations: Iterable[Violation]) -> Severity:
    """The worst severity among ``violations`` (``pass`` when there are none)."""
    worst: Severity = "pass"
    for violation in violations:
        if _RANK[violation.severity] > _RANK[worst]:
            worst = violation.severity
    return worst


def guard_result(
    name: str,
    violations: Iterable[Violation],
    *,
    metrics: Mapping[str, Any],
    thresholds: Mapping[str, Any],
    details: Mapping[str, Any] | None = None,
) -> GuardResult:
    """A result whose ``passed``/``severity`` follow from the violations (fails listed first)."""
    ordered = sorted(violations, key=lambda v: (-_RANK[v.severity], v.target, v.message))
    severity = overall_severity(ordered)
    return GuardResult(
        name=name,
        passed=severity != "fail",
        severity=severity,
        metrics={
            **metrics,
            "violations_total": len(ordered),
            "failures_total": sum(1 for v in ordered if v.severity == "fail"),
        },
        violations=tuple(ordered[:MAX_LISTED]),
        thresholds=dict(thresholds),
        details=dict(details or {}),
    )
