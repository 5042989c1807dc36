"""The final verdict's sidecar documents (seeds S-25, R-09, G-15), computed from one run's evidence.

* ``category_summary.json``: per scenario kind, runs and outcomes against what the kind expects.
* ``scenario_signal_summary.json``: per scenario, which guards flagged its subjects on which models.
* ``guard_signal_summary.json``: guard x scenario (and guard x kind) counts of flagged runs.
* ``guard_intervention_summary.json``: remediation that did not fail a report (spectral caps,
  proposed variance scales, RMT outliers, warnings) and the probe sidecars.
* ``model_summary_<model>.json``: one model's scenario outcomes and its own verdict.
* ``edit_artifact_summary.json``: what each edited or injected subject is (edit metadata digest).
* ``guard_value_all_guard_probe_sweep.json``: baseline-relative guard movement (G-15): a guard's
  value counts only beyond what the same guard already shows on the model's noop baseline, only
  where the primary metric accepted the subject, and a case is confirmed only when a second run
  of the same scenario reproduces it.

Each function returns a plain JSON document; :func:`sidecar_documents` names them all.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from invarlock_packs.suite.verdict_inputs import LoadedReport, RunEvidence
from invarlock_packs.verdict_rules import (
    EXPECTED_VERDICT,
    INFORMATIONAL_KINDS,
    KINDS,
    FinalVerdict,
    ScenarioOutcome,
    guard_failed,
)

__all__ = [
    "GUARD_VALUE_METRICS",
    "GUARD_VALUE_SWEEP",
    "category_summary",
    "edit_artifact_summary",
    "guard_intervention_summary",
    "guard_signal_summary",
    "guard_value_sweep",
    "model_summary",
    "scenario_signal_summary",
    "sidecar_documents",
]

GUARD_VALUE_SWEEP: Final = "guard_value_all_guard_probe_sweep.json"
GUARD_VALUE_METRICS: Final[Mapping[str, tuple[str, ...]]] = {
    "spectral": ("caps_applied", "violations_total"),
    "rmt": ("outliers", "violations_total"),
    "variance": ("proposed_scales", "violations_total"),
}
"""The guard values G-15 compares with the baseline, per guard (other guards: violations)."""
_INTERVENTION_METRICS: Final = ("caps_applied", "proposed_scales", "outliers", "ve_enabled")
"""Guard metrics that record remediation rather than failure."""


def _doc(name: str, **body: Any) -> dict[str, Any]:
    return {"format": f"invarlock-suite-{name}-v1", **body}


def _fraction(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def category_summary(verdict: FinalVerdict) -> dict[str, Any]:
    """Per kind: scenarios, runs, PASS/FAIL counts, and whether the kind's expectation holds."""
    threshold = verdict.criteria.informational_stress_min_fail_fraction
    categories = {}
    for kind in sorted({o.kind for o in verdict.scenarios}, key=_kind_order):
        outcomes = [o for o in verdict.scenarios if o.kind == kind]
        runs = sum(o.runs for o in outcomes)
        failed = sum(o.failed for o in outcomes)
        fraction = _fraction(failed, runs)
        ok: bool | None
        if kind in INFORMATIONAL_KINDS:
            ok = fraction is None or fraction >= threshold
        elif kind in EXPECTED_VERDICT:
            ok = all(o.ok for o in outcomes)
        else:
            ok = None
        categories[kind] = {
            "expected": outcomes[0].expected,
            "scenarios": len({o.scenario_id for o in outcomes}),
            "runs": runs,
            "passed": sum(o.passed for o in outcomes),
            "failed": failed,
            "missing": sum(max(0, (o.runs_expected or 1) - o.runs) for o in outcomes),
            "fail_fraction": fraction,
            "ok": ok,
        }
    return _doc("category-summary", informational_min_fraction=threshold, categories=categories)


def _kind_order(kind: str) -> tuple[int, str]:
    return (KINDS.index(kind) if kind in KINDS else len(KINDS), kind)


def _flag_counts(reports: Iterable[LoadedReport]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for loaded in reports:
        for name in loaded.observation.flagged_by:
            counts[name] += 1
    return dict(sorted(counts.items()))


def _outcome_json(outcome: ScenarioOutcome) -> dict[str, Any]:
    return {
        "observed": outcome.observed,
        "ok": outcome.ok,
        "runs": outcome.runs,
        "failed": outcome.failed,
        "detected_by": list(outcome.detected_by),
        "primary_guard_flagged": outcome.primary_guard_flagged,
    }


def scenario_signal_summary(verdict: FinalVerdict, evidence: RunEvidence) -> dict[str, Any]:
    """Per scenario: its intent and primary guard, and which guards flagged it on each model."""
    entries = []
    for rule in evidence.rules:
        reports = [r for r in evidence.reports if r.observation.scenario_id == rule.id]
        primary = rule.primary_guard
        entries.append(
            {
                "id": rule.id,
                "kind": rule.kind,
                "intent": evidence.scenario(rule.id).get("intent"),
                "primary_guard": primary,
                "runs": len(reports),
                "failed": sum(1 for r in reports if r.observation.verdict == "FAIL"),
                "flagged_by": _flag_counts(reports),
                "primary_guard_flagged_runs": None
                if primary is None
                else sum(1 for r in reports if primary in r.observation.flagged_by),
                "models": {
                    o.model: _outcome_json(o) for o in verdict.scenarios if o.scenario_id == rule.id
                },
            }
        )
    return _doc("scenario-signal-summary", scenarios=entries)


def _guard_names(reports: Iterable[LoadedReport]) -> list[str]:
    names = {"primary_metric"}
    for loaded in reports:
        guards = loaded.report.get("guards")
        for guard in guards if isinstance(guards, list) else []:
            if isinstance(guard, Mapping) and isinstance(guard.get("name"), str):
                names.add(guard["name"])
    return sorted(names)


def _grid(
    reports: Sequence[LoadedReport], guards: Sequence[str], key: Any
) -> dict[str, dict[str, dict[str, int]]]:
    grid: dict[str, dict[str, dict[str, int]]] = {}
    for loaded in reports:
        row = grid.setdefault(key(loaded), {g: {"runs": 0, "flagged": 0} for g in guards})
        for guard in guards:
            row[guard]["runs"] += 1
            row[guard]["flagged"] += int(guard in loaded.observation.flagged_by)
    return grid


def guard_signal_summary(evidence: RunEvidence) -> dict[str, Any]:
    """Guard x scenario and guard x kind: how many runs each guard flagged."""
    guards = _guard_names(evidence.reports)
    kinds = {rule.id: rule.kind for rule in evidence.rules}
    return _doc(
        "guard-signal-summary",
        guards=guards,
        by_scenario=_grid(evidence.reports, guards, lambda r: r.observation.scenario_id),
        by_kind=_grid(evidence.reports, guards, lambda r: kinds[r.observation.scenario_id]),
    )


def _guard_metrics(report: Mapping[str, Any]) -> dict[str, tuple[bool, Mapping[str, Any]]]:
    """``{guard: (passed, metrics)}`` of one report."""
    result = {}
    guards = report.get("guards")
    for guard in guards if isinstance(guards, list) else []:
        if isinstance(guard, Mapping) and isinstance(guard.get("name"), str):
            metrics = guard.get("metrics")
            result[guard["name"]] = (not guard_failed(guard), _mapping(metrics))
    return result


def _value(metrics: Mapping[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    if isinstance(value, bool):
        return float(value)
    return float(value) if isinstance(value, int | float) else None


def _interventions(loaded: LoadedReport) -> list[dict[str, Any]]:
    where = loaded.observation.where
    found: list[dict[str, Any]] = []
    for name, (passed, metrics) in sorted(_guard_metrics(loaded.report).items()):
        if not passed:
            continue
        for key in _INTERVENTION_METRICS:
            value = _value(metrics, key)
            if value:
                found.append({"report": where, "guard": name, "signal": key, "value": value})
    warnings = loaded.report.get("warnings")
    for text in warnings if isinstance(warnings, list) else []:
        found.append({"report": where, "guard": None, "signal": "warning", "value": str(text)})
    return found


def _probe_entries(loaded: LoadedReport) -> list[dict[str, Any]]:
    return [
        {
            "report": loaded.observation.where,
            "file": name,
            "kind": probe.get("kind"),
            "document": dict(probe),
        }
        for name, probe in sorted(loaded.probes.items())
    ]


def guard_intervention_summary(evidence: RunEvidence) -> dict[str, Any]:
    """Non-failing remediation signals and probe sidecars, per report."""
    interventions = [i for r in evidence.reports for i in _interventions(r)]
    counts: dict[str, int] = defaultdict(int)
    for item in interventions:
        counts[f"{item['guard'] or 'report'}.{item['signal']}"] += 1
    return _doc(
        "guard-intervention-summary",
        interventions=interventions,
        counts=dict(sorted(counts.items())),
        probes=[p for r in evidence.reports for p in _probe_entries(r)],
    )


def model_summary(verdict: FinalVerdict, model: str) -> dict[str, Any]:
    """One model's scenario outcomes; its verdict is PASS when every gating outcome holds."""
    outcomes = [o for o in verdict.scenarios if o.model == model]
    gating = [o for o in outcomes if o.ok is not None and o.kind not in INFORMATIONAL_KINDS]
    return _doc(
        "model-summary",
        model=model,
        verdict="PASS" if all(o.ok for o in gating) else "FAIL",
        scenarios=[
            {
                "scenario_id": o.scenario_id,
                "kind": o.kind,
                "expected": o.expected,
                **_outcome_json(o),
            }
            for o in outcomes
        ],
    )


def _artifact(loaded: LoadedReport, kind: str, runs: int, digests: set[str]) -> dict[str, Any]:
    meta = loaded.edit_metadata or {}
    coverage = _mapping(meta.get("coverage"))
    output = _mapping(meta.get("output"))
    return {
        "model": loaded.observation.model,
        "scenario_id": loaded.observation.scenario_id,
        "kind": kind,
        "edit_type": meta.get("edit_type"),
        "resolved_spec": meta.get("resolved_spec"),
        "artifact_class": meta.get("artifact_class"),
        "storage_format": meta.get("storage_format"),
        "deployment": meta.get("deployment"),
        "tensors_changed": coverage.get("tensors_changed"),
        "tensors_total": coverage.get("tensors_total"),
        "elements_changed": coverage.get("elements_changed"),
        "elements_total": coverage.get("elements_total"),
        "output_digest": output.get("digest"),
        "reports": runs,
        "one_subject": len(digests) <= 1,
    }


def edit_artifact_summary(evidence: RunEvidence) -> dict[str, Any]:
    """One entry per model x scenario: the subject its reports evaluated (R-09)."""
    groups: dict[tuple[str, str], list[LoadedReport]] = defaultdict(list)
    for loaded in evidence.reports:
        groups[(loaded.observation.model, loaded.observation.scenario_id)].append(loaded)
    kinds = {rule.id: rule.kind for rule in evidence.rules}
    artifacts = []
    for (_, scenario), reports in groups.items():
        with_meta = [r for r in reports if r.edit_metadata is not None]
        if not with_meta:
            continue
        digests = {d for r in with_meta if (d := _output_digest(r)) is not None}
        artifacts.append(_artifact(with_meta[0], kinds[scenario], len(reports), digests))
    return _doc("edit-artifact-summary", artifacts=artifacts)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _output_digest(loaded: LoadedReport) -> str | None:
    output = (loaded.edit_metadata or {}).get("output")
    digest = output.get("digest") if isinstance(output, Mapping) else None
    return digest if isinstance(digest, str) else None


def _guard_values(report: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    values: dict[str, dict[str, float]] = {}
    for name, (_, metrics) in _guard_metrics(report).items():
        keys = GUARD_VALUE_METRICS.get(name, ("violations_total",))
        values[name] = {k: v for k in keys if (v := _value(metrics, k)) is not None}
    return values


def _pm_accepted(report: Mapping[str, Any]) -> bool:
    validation = report.get("validation")
    return isinstance(validation, Mapping) and validation.get("primary_metric_ok") is True


def _movement(subject: Mapping[str, float], baseline: Mapping[str, float]) -> dict[str, float]:
    """Values above the baseline's: movement the noop baseline already shows does not count."""
    return {
        key: value - baseline.get(key, 0.0)
        for key, value in subject.items()
        if value > baseline.get(key, 0.0)
    }


def guard_value_sweep(evidence: RunEvidence) -> dict[str, Any]:
    """Baseline-relative guard-value evidence (G-15), per model x scenario x guard."""
    baselines = {m: _guard_values(r) for m, r in evidence.baselines.items()}
    runs: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for loaded in evidence.reports:
        model = loaded.observation.model
        if model not in baselines or not _pm_accepted(loaded.report):
            continue
        for guard, values in _guard_values(loaded.report).items():
            moved = _movement(values, baselines[model].get(guard, {}))
            if moved:
                key = (model, loaded.observation.scenario_id, guard)
                runs[key].append({"report": loaded.observation.where, "movement": moved})
    cases = [
        {
            "model": model,
            "scenario_id": scenario,
            "guard": guard,
            "baseline_values": baselines[model].get(guard, {}),
            "runs": found,
            "status": "confirmed" if len(found) >= 2 else "unconfirmed",
        }
        for (model, scenario, guard), found in sorted(runs.items())
    ]
    return _doc(
        "guard-value-sweep",
        rule=(
            "a case needs primary-metric acceptance and guard movement beyond the same guard's "
            "values on the model's noop baseline; it is confirmed when a second run reproduces it"
        ),
        models_without_baseline=sorted(set(evidence.models) - set(baselines)),
        baselines=baselines,
        cases=cases,
        confirmed=sum(1 for c in cases if c["status"] == "confirmed"),
        probes=[p for r in evidence.reports for p in _probe_entries(r)],
    )


def sidecar_documents(verdict: FinalVerdict, evidence: RunEvidence) -> dict[str, dict[str, Any]]:
    """Every sidecar, by file name (all written to ``OUT/reports/``)."""
    documents = {
        "category_summary.json": category_summary(verdict),
        "scenario_signal_summary.json": scenario_signal_summary(verdict, evidence),
        "guard_signal_summary.json": guard_signal_summary(evidence),
        "guard_intervention_summary.json": guard_intervention_summary(evidence),
        "edit_artifact_summary.json": edit_artifact_summary(evidence),
        GUARD_VALUE_SWEEP: guard_value_sweep(evidence),
    }
    for model in verdict.models:
        documents[f"model_summary_{model}.json"] = model_summary(verdict, model)
    return documents
