"""The suite's final-verdict rules, as one pure function over scenarios and report observations.

A suite passes when every clean run passes, every required-fail stress run fails, every
must-detect error fixture is detected (its report fails), at least ``informational_min_fraction``
of the informational stress runs and of the informational error runs fail, every expected report
is there, and every report's category is its scenario's kind. The run-directory compiler
(:mod:`invarlock_packs.suite.verdict`) and the pack verifier (:mod:`invarlock_packs.verdict_check`)
both call :func:`decide`, so a pack's sealed verdict is checked by the same rules that wrote it.
Nothing here reads files or imports torch.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

__all__ = [
    "CRITERIA",
    "ERROR_KINDS",
    "EXPECTED_VERDICT",
    "INFORMATIONAL_KINDS",
    "KINDS",
    "Criteria",
    "FinalVerdict",
    "RunObservation",
    "ScenarioOutcome",
    "ScenarioRule",
    "VerdictCounts",
    "acceptance_bound",
    "decide",
    "flagged_by",
    "guard_failed",
    "observe_report",
    "scenario_rules",
]

KINDS: Final = (
    "clean",
    "stress_required_fail",
    "stress_informational",
    "error_must_detect",
    "error_informational",
)
"""Scenario kinds; a scenario's ``category`` (and its subjects' edit metadata) equals its kind."""
ERROR_KINDS: Final = frozenset({"error_must_detect", "error_informational"})
"""Kinds evaluated once per model from ``<model>/reports/errors/<scenario>/``."""
INFORMATIONAL_KINDS: Final = frozenset({"stress_informational", "error_informational"})
EXPECTED_VERDICT: Final[Mapping[str, str]] = {
    "clean": "PASS",
    "stress_required_fail": "FAIL",
    "stress_informational": "FAIL",
    "error_must_detect": "FAIL",
    "error_informational": "FAIL",
}
"""The report verdict each kind expects (for informational kinds: expects, without requiring)."""
CRITERIA: Final = (
    "clean_all_pass",
    "stress_required_fail",
    "error_injection_detected",
    "informational_stress_met",
    "informational_errors_met",
    "reports_complete",
    "categories_consistent",
)
"""The boolean criteria, in the order failed requirements are listed."""


@attrs.frozen
class ScenarioRule:
    """What the verdict needs from one entry of ``scenarios.json``."""

    id: str
    kind: str
    """One of :data:`KINDS`, or anything else for an unclassified (non-gating) scenario."""
    runs: int | None
    """Expected reports per model; ``None``: at least one. Error kinds always expect one."""
    category: str | None = None
    primary_guard: str | None = None

    @property
    def expected_runs(self) -> int | None:
        return 1 if self.kind in ERROR_KINDS else self.runs


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def scenario_rules(document: Mapping[str, Any]) -> tuple[ScenarioRule, ...]:
    """The rules of a schema-valid ``scenarios.json`` (``kind`` falls back to ``category``)."""
    rules = []
    for entry in document["scenarios"]:
        runs = entry.get("runs")
        category = _optional_str(entry.get("category"))
        rules.append(
            ScenarioRule(
                id=str(entry["id"]),
                kind=_optional_str(entry.get("kind")) or category or "unclassified",
                runs=runs if isinstance(runs, int) and not isinstance(runs, bool) else None,
                category=category,
                primary_guard=_optional_str(entry.get("primary_guard")),
            )
        )
    return tuple(rules)


@attrs.frozen
class RunObservation:
    """One report as the verdict sees it."""

    model: str
    scenario_id: str
    where: str
    """The report's path, relative to the run directory or the pack."""
    verdict: str
    category: str | None
    """The category in the report's ``edit_metadata.json``, when it has one."""
    flagged_by: tuple[str, ...] = ()
    """Guards that failed, plus ``primary_metric`` when the paired metric failed."""
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    bound: float | None = None
    """The acceptance bound the ratio and its CI upper end were gated against."""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def guard_failed(guard: Mapping[str, Any]) -> bool:
    """Whether one guard entry of a report failed (``passed`` false or severity ``fail``)."""
    return guard.get("passed") is False or guard.get("severity") == "fail"


def flagged_by(report: Mapping[str, Any]) -> tuple[str, ...]:
    """Which guards (and ``primary_metric``) flagged the subject of an evaluation report."""
    names = set()
    guards = report.get("guards")
    for guard in guards if isinstance(guards, list) else []:
        if not isinstance(guard, Mapping):
            continue
        if guard_failed(guard):
            names.add(str(guard.get("name", "guard")))
    validation = report.get("validation")
    if isinstance(validation, Mapping) and (
        validation.get("primary_metric_ok") is False
        or validation.get("primary_metric_finite") is False
    ):
        names.add("primary_metric")
    return tuple(sorted(names))


def acceptance_bound(report: Mapping[str, Any]) -> float | None:
    """Upper acceptance bound plus tolerance, as the report's policy states them."""
    policy = report.get("policy")
    if not isinstance(policy, Mapping):
        return None
    bounds = policy.get("acceptance_range")
    upper = _number(bounds[1]) if isinstance(bounds, list) and len(bounds) == 2 else None
    tolerance = _number(policy.get("tolerance")) or 0.0
    return None if upper is None else upper + tolerance


def observe_report(
    report: Mapping[str, Any], *, model: str, scenario_id: str, where: str, category: str | None
) -> RunObservation:
    """The observation of one parsed evaluation report."""
    metric = report.get("primary_metric")
    metric_map: Mapping[str, Any] = metric if isinstance(metric, Mapping) else {}
    ci = metric_map.get("ci")
    low, high = ci if isinstance(ci, list) and len(ci) == 2 else (None, None)
    verdict = report.get("verdict")
    return RunObservation(
        model=model,
        scenario_id=scenario_id,
        where=where,
        verdict=verdict if verdict in {"PASS", "FAIL"} else "UNKNOWN",
        category=category,
        flagged_by=flagged_by(report),
        ratio=_number(metric_map.get("ratio")),
        ci_low=_number(low),
        ci_high=_number(high),
        bound=acceptance_bound(report),
    )


@attrs.frozen
class ScenarioOutcome:
    """One scenario on one model: what was expected and what the reports show."""

    model: str
    scenario_id: str
    kind: str
    expected: str
    """``PASS``, ``FAIL``, ``FAIL (informational)`` or ``-`` for unclassified scenarios."""
    observed: str
    """``PASS``/``FAIL`` when every run agrees, ``MIXED``, or ``MISSING`` without reports."""
    ok: bool | None
    """Whether the observed outcome is the expected one; ``None`` for unclassified scenarios."""
    runs_expected: int | None
    runs: int
    passed: int
    failed: int
    detected_by: tuple[str, ...]
    primary_guard: str | None
    primary_guard_flagged: bool | None
    reports: tuple[str, ...]


@attrs.frozen
class Criteria:
    """The final verdict's criteria; the verdict is PASS when every boolean one holds."""

    clean_all_pass: bool
    stress_required_fail: bool
    error_injection_detected: bool
    informational_stress_met: bool
    informational_errors_met: bool
    reports_complete: bool
    categories_consistent: bool
    informational_stress_min_fail_fraction: float
    """The threshold both informational criteria use (the seeds' name for it)."""

    def holds(self) -> bool:
        return all(getattr(self, name) for name in CRITERIA)


@attrs.frozen
class VerdictCounts:
    """How many runs of each kind there were and how they came out."""

    models: int
    scenarios: int
    reports: int
    missing_reports: int
    category_mismatches: int
    clean_runs: int
    clean_failed: int
    stress_required_runs: int
    stress_required_passed: int
    stress_informational_runs: int
    stress_informational_failed: int
    error_must_detect_runs: int
    error_must_detect_missed: int
    error_informational_runs: int
    error_informational_failed: int
    unclassified_runs: int


@attrs.frozen
class FinalVerdict:
    """The suite's final verdict with everything that decided it."""

    verdict: str
    criteria: Criteria
    counts: VerdictCounts
    failed_requirements: tuple[str, ...]
    models: tuple[str, ...]
    scenarios: tuple[ScenarioOutcome, ...]

    @property
    def passed(self) -> bool:
        return self.verdict == "PASS"

    def to_json(self) -> dict[str, Any]:
        """The ``final_verdict.json`` document (schema ``final-verdict``)."""
        # A JSON round trip turns the records' tuples into lists, as a reader will see them.
        body = json.loads(json.dumps(attrs.asdict(self), allow_nan=False))
        return {"format": "invarlock-final-verdict-v1", **body}


def _outcome(model: str, rule: ScenarioRule, runs: Sequence[RunObservation]) -> ScenarioOutcome:
    passed = sum(1 for r in runs if r.verdict == "PASS")
    failed = sum(1 for r in runs if r.verdict == "FAIL")
    observed = (
        "MISSING"
        if not runs
        else "PASS"
        if passed == len(runs)
        else "FAIL"
        if failed == len(runs)
        else "MIXED"
    )
    expected = EXPECTED_VERDICT.get(rule.kind)
    ok: bool | None = None if expected is None else observed == expected
    if rule.kind in INFORMATIONAL_KINDS and expected is not None:
        expected += " (informational)"
    detected = tuple(sorted({name for r in runs for name in r.flagged_by}))
    return ScenarioOutcome(
        model=model,
        scenario_id=rule.id,
        kind=rule.kind,
        expected=expected or "-",
        observed=observed,
        ok=ok,
        runs_expected=rule.expected_runs,
        runs=len(runs),
        passed=passed,
        failed=failed,
        detected_by=detected,
        primary_guard=rule.primary_guard,
        primary_guard_flagged=None
        if rule.primary_guard is None
        else rule.primary_guard in detected,
        reports=tuple(r.where for r in runs),
    )


def _fraction_text(failed: int, runs: int, threshold: float) -> str:
    return f"{failed} of {runs} failed ({failed / runs:.2f} < {threshold:g})"


@attrs.define
class _Tally:
    """Counts and failed requirements, gathered while walking the outcomes."""

    threshold: float
    problems: dict[str, list[str]] = attrs.field(factory=lambda: defaultdict(list))
    counts: dict[str, int] = attrs.field(factory=lambda: defaultdict(int))

    def runs(self, rule: ScenarioRule, model: str, runs: Sequence[RunObservation]) -> None:
        self.counts["reports"] += len(runs)
        for run in runs:
            if run.verdict == "UNKNOWN":
                self.problems["reports_complete"].append(f"{run.where} has no PASS/FAIL verdict")
            if run.category is not None and run.category != rule.kind:
                self.counts["category_mismatches"] += 1
                self.problems["categories_consistent"].append(
                    f"{run.where}: edit metadata category {run.category!r} is not the kind "
                    f"{rule.kind!r} of scenario {rule.id}"
                )
        if rule.kind not in EXPECTED_VERDICT:
            return  # an unclassified scenario is not part of the verdict, present or not
        expected = rule.expected_runs
        missing = (expected - len(runs)) if expected is not None else (0 if runs else 1)
        if missing > 0:
            self.counts["missing_reports"] += missing
            self.problems["reports_complete"].append(
                f"{model}/{rule.id}: {len(runs)} of {expected or 1} reports"
            )

    def outcome(self, outcome: ScenarioOutcome) -> None:
        keys = _COUNT_KEYS.get(outcome.kind)
        if keys is None:
            self.counts["unclassified_runs"] += outcome.runs
            return
        runs_key, bad_key, counts_passed = keys
        self.counts[runs_key] += outcome.runs
        self.counts[bad_key] += outcome.passed if counts_passed else outcome.failed

    def informational(self, key: str, runs_key: str, failed_key: str, what: str) -> None:
        runs, failed = self.counts[runs_key], self.counts[failed_key]
        if runs and failed / runs < self.threshold:
            self.problems[key].append(f"{what}: {_fraction_text(failed, runs, self.threshold)}")


def decide(
    rules: Sequence[ScenarioRule],
    observations: Iterable[RunObservation],
    models: Sequence[str],
    *,
    informational_min_fraction: float = 0.5,
) -> FinalVerdict:
    """The final verdict of ``models`` × ``rules`` given every report observed.

    Observations of scenarios that are not in ``rules`` or of models not in ``models`` are
    reported as category problems: a report the manifest does not explain cannot count.
    """
    if not 0.0 <= informational_min_fraction <= 1.0:
        raise ValueError("informational_min_fraction must lie in [0, 1]")
    tally = _Tally(informational_min_fraction)
    by_key: dict[tuple[str, str], list[RunObservation]] = defaultdict(list)
    for observation in observations:
        by_key[(observation.model, observation.scenario_id)].append(observation)
    known = {(m, r.id) for m in models for r in rules}
    for model, scenario in sorted(set(by_key) - known):
        tally.problems["categories_consistent"].append(
            f"{model}/{scenario}: reports for a scenario or model the manifest does not list"
        )
    outcomes = []
    for model in models:
        for rule in rules:
            runs = sorted(by_key.get((model, rule.id), []), key=lambda r: r.where)
            tally.runs(rule, model, runs)
            outcome = _outcome(model, rule, runs)
            _gate_problems(tally, outcome, runs)
            tally.outcome(outcome)
            outcomes.append(outcome)
    tally.informational(
        "informational_stress_met",
        "stress_informational_runs",
        "stress_informational_failed",
        "informational stress runs",
    )
    tally.informational(
        "informational_errors_met",
        "error_informational_runs",
        "error_informational_failed",
        "informational error runs",
    )
    criteria = Criteria(
        **{name: not tally.problems.get(name) for name in CRITERIA},
        informational_stress_min_fail_fraction=informational_min_fraction,
    )
    counts = VerdictCounts(
        models=len(models),
        scenarios=len(rules),
        **{
            field.name: tally.counts[field.name]
            for field in attrs.fields(VerdictCounts)
            if field.name not in {"models", "scenarios"}
        },
    )
    failed = tuple(f"{name}: {text}" for name in CRITERIA for text in tally.problems.get(name, []))
    return FinalVerdict(
        verdict="PASS" if criteria.holds() else "FAIL",
        criteria=criteria,
        counts=counts,
        failed_requirements=failed,
        models=tuple(models),
        scenarios=tuple(outcomes),
    )


_COUNT_KEYS: Final[Mapping[str, tuple[str, str, bool]]] = {
    "clean": ("clean_runs", "clean_failed", False),
    "stress_required_fail": ("stress_required_runs", "stress_required_passed", True),
    "stress_informational": ("stress_informational_runs", "stress_informational_failed", False),
    "error_must_detect": ("error_must_detect_runs", "error_must_detect_missed", True),
    "error_informational": ("error_informational_runs", "error_informational_failed", False),
}
"""Per kind: the runs counter, the counter of notable runs, and whether PASS runs are notable."""
_GATED: Final[Mapping[str, tuple[str, str]]] = {
    "clean": ("clean_all_pass", "PASS"),
    "stress_required_fail": ("stress_required_fail", "FAIL"),
    "error_must_detect": ("error_injection_detected", "FAIL"),
}


def _gate_problems(tally: _Tally, outcome: ScenarioOutcome, runs: Sequence[RunObservation]) -> None:
    """Name every report of a gating scenario whose verdict is not the required one."""
    gate = _GATED.get(outcome.kind)
    if gate is None:
        return
    criterion, required = gate
    name = f"{outcome.model}/{outcome.scenario_id}"
    for run in runs:
        if run.verdict != required:
            detail = "not detected: " if criterion == "error_injection_detected" else ""
            tally.problems[criterion].append(f"{name}: {detail}{run.where} is {run.verdict}")
