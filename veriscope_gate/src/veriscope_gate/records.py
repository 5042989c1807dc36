"""Gate decisions and their audit records (the ``gates[]`` entries of ``results.json``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import attrs

__all__ = [
    "DECISIONS",
    "Audit",
    "Counts",
    "Decision",
    "GateRecord",
    "count_decisions",
    "final_decision",
    "flags_for",
]

Decision = Literal["pass", "warn", "fail", "skip"]
DECISIONS: tuple[str, ...] = ("pass", "warn", "fail", "skip")


@attrs.frozen
class Audit:
    """Why a gate check decided what it did.

    The first eight fields are the published contract (AuditV1); the rest are Veriscope's
    additions (extra keys are allowed by the contract).
    """

    evaluated: bool
    reason: str
    policy: str
    worst_DW: float | None
    eps_eff: float | None
    per_metric_tv: dict[str, float]
    evidence_total: int
    min_evidence: int
    eps_stat: float | None = None
    threshold: float | None = None
    p_value: float | None = None
    null_quantile: float | None = None
    per_metric_p: dict[str, float] = attrs.field(factory=dict)
    per_metric_shift: dict[str, float] = attrs.field(factory=dict)
    metrics_exceeding: list[str] = attrs.field(factory=list)
    not_evaluable: dict[str, str] = attrs.field(factory=dict)
    drift_exceed: bool | None = None
    gain_bits: float | None = None
    gain_ok: bool | None = None
    streak: int = 0
    causes: list[str] = attrs.field(factory=list)
    regime: dict[str, Any] | None = None


@attrs.frozen
class GateRecord:
    """One gate check: ``decision`` is canonical; ``ok``/``warn`` are derived back-compat flags."""

    iter: int
    decision: Decision
    audit: Audit
    ok: bool | None = None
    warn: bool | None = None


def flags_for(decision: str) -> tuple[bool | None, bool | None]:
    """The back-compat ``(ok, warn)`` booleans implied by a decision (skip has none)."""
    return {
        "pass": (True, False),
        "warn": (True, True),
        "fail": (False, False),
    }.get(decision, (None, None))


@attrs.frozen
class Counts:
    """Decision counts of a run (``evaluated = pass + warn + fail``)."""

    evaluated: int = 0
    skip: int = 0
    pass_: int = attrs.field(default=0, alias="pass_")
    warn: int = 0
    fail: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "evaluated": self.evaluated,
            "skip": self.skip,
            "pass": self.pass_,
            "warn": self.warn,
            "fail": self.fail,
        }


def count_decisions(decisions: Iterable[str]) -> Counts:
    """Count pass/warn/fail/skip; ``evaluated`` counts everything but skip."""
    tally = dict.fromkeys(DECISIONS, 0)
    for d in decisions:
        tally[d] = tally.get(d, 0) + 1
    return Counts(
        evaluated=tally["pass"] + tally["warn"] + tally["fail"],
        skip=tally["skip"],
        pass_=tally["pass"],
        warn=tally["warn"],
        fail=tally["fail"],
    )


def final_decision(decisions: Iterable[str]) -> Decision:
    """Any fail → fail; else any warn → warn; else any pass → pass; else skip."""
    seen = set(decisions)
    for d in ("fail", "warn", "pass"):
        if d in seen:
            return d
    return "skip"
