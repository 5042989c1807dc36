"""``pack verify`` recomputes the final verdict from the bundled reports (exit 7 when it disagrees).

A pack's ``results/final_verdict.json`` is a recorded conclusion; the verifier does not take it
on trust. From the sealed reports, each report's ``edit_metadata.json`` (scenario id and category)
and ``metadata/scenarios.json`` it recomputes the verdict with the same rules the suite used
(:func:`invarlock_packs.verdict_rules.decide`, threshold taken from the recorded criteria) and
compares the verdict, every recorded criterion and count it knows, and every recorded
per-scenario outcome. Any difference is named: which criterion, which report.

Only files whose checksums matched are read; a pack without a scenario manifest cannot be
recomputed and says so (the check is informational there, since nothing classifies its reports),
and ``--report-assurance off`` skips it with the other report checks.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal

import attrs

from invarlock_core.errors import InvarlockError
from invarlock_core.json_files import read_json_object
from invarlock_core.schema_validation import schema_errors
from invarlock_packs import layout
from invarlock_packs.verdict_rules import (
    CRITERIA,
    FinalVerdict,
    RunObservation,
    decide,
    observe_report,
    scenario_rules,
)

__all__ = ["VerdictCheck", "recompute_pack_verdict"]

_SHOWN: Final = 3
_DEFAULT_FRACTION: Final = 0.5


@attrs.frozen
class VerdictCheck:
    """The outcome of recomputing a pack's final verdict."""

    ok: bool
    category: Literal["reports", "info"]
    detail: str
    recomputed: FinalVerdict | None = None


class _Unreadable(Exception):
    """A sealed document the recomputation needs cannot be used."""


def _read(root: Path, rel: str, what: str) -> dict[str, Any]:
    try:
        return read_json_object(root / rel, what=what)
    except InvarlockError as exc:
        raise _Unreadable(str(exc)) from None


def _observations(root: Path, sealed: Collection[str]) -> tuple[list[RunObservation], list[str]]:
    """Observations of reports with edit metadata; the paths of reports without it."""
    observations, unexplained = [], []
    suffix = "/" + layout.REPORT_FILE
    for rel in sorted(r for r in sealed if r.startswith(layout.REPORTS_DIR + "/")):
        if not rel.endswith(suffix):
            continue
        meta_rel = rel[: -len(layout.REPORT_FILE)] + layout.EDIT_METADATA
        if meta_rel not in sealed:
            unexplained.append(rel)
            continue
        meta = _read(root, meta_rel, "edit metadata")
        category = meta.get("category")
        observations.append(
            observe_report(
                _read(root, rel, "report"),
                model=rel.split("/")[1],
                scenario_id=str(meta.get("scenario_id")),
                where=rel,
                category=category if isinstance(category, str) else None,
            )
        )
    return observations, unexplained


def _threshold(recorded: Mapping[str, Any]) -> float:
    criteria = recorded.get("criteria")
    value = (
        criteria.get("informational_stress_min_fail_fraction")
        if isinstance(criteria, Mapping)
        else None
    )
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    return _DEFAULT_FRACTION


def _models(recorded: Mapping[str, Any], observations: Sequence[RunObservation]) -> list[str]:
    """The recorded models (a model whose reports were all dropped still counts) and the pack's."""
    listed = recorded.get("models")
    named = [m for m in listed if isinstance(m, str)] if isinstance(listed, list) else []
    return sorted(set(named) | {o.model for o in observations})


def _kind_problems(scenarios: Mapping[str, Any]) -> list[str]:
    return [
        f"{layout.SCENARIOS}: scenario {s['id']} has kind {s['kind']!r} but category "
        f"{s['category']!r}"
        for s in scenarios["scenarios"]
        if "kind" in s and "category" in s and s["kind"] != s["category"]
    ]


def _criteria_problems(recorded: Mapping[str, Any], fresh: FinalVerdict) -> list[str]:
    criteria = recorded.get("criteria")
    if not isinstance(criteria, Mapping):
        return []
    return [
        f"criterion {name} is recorded {str(criteria[name]).lower()} but the reports give "
        f"{str(getattr(fresh.criteria, name)).lower()}"
        for name in CRITERIA
        if isinstance(criteria.get(name), bool) and criteria[name] != getattr(fresh.criteria, name)
    ]


def _count_problems(recorded: Mapping[str, Any], fresh: FinalVerdict) -> list[str]:
    counts = recorded.get("counts")
    if not isinstance(counts, Mapping):
        return []
    ours = attrs.asdict(fresh.counts)
    return [
        f"count {name} is recorded {counts[name]} but the pack holds {ours[name]}"
        for name in sorted(set(ours) & set(counts))
        if counts[name] != ours[name]
    ]


def _scenario_problems(recorded: Mapping[str, Any], fresh: FinalVerdict) -> list[str]:
    entries = recorded.get("scenarios")
    outcomes = {(o.model, o.scenario_id): o for o in fresh.scenarios}
    problems = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, Mapping):
            continue
        key = (str(entry.get("model")), str(entry.get("scenario_id")))
        outcome = outcomes.get(key)
        name = "/".join(key)
        if outcome is None:
            problems.append(f"recorded scenario {name} is not in the pack's scenarios and models")
            continue
        for field in ("kind", "observed"):
            if field in entry and entry[field] != getattr(outcome, field):
                problems.append(
                    f"{name}: recorded {field} {entry[field]!r} but the reports give "
                    f"{getattr(outcome, field)!r}"
                )
    return problems


def _compare(recorded: Mapping[str, Any], fresh: FinalVerdict) -> list[str]:
    problems = []
    if recorded.get("verdict") != fresh.verdict:
        reasons = "; ".join(fresh.failed_requirements[:_SHOWN]) or "every criterion holds"
        problems.append(
            f"final verdict is recorded {recorded.get('verdict')} but the bundled reports give "
            f"{fresh.verdict} ({reasons})"
        )
    problems += _criteria_problems(recorded, fresh)
    problems += _count_problems(recorded, fresh)
    problems += _scenario_problems(recorded, fresh)
    return problems


def _listed(items: Sequence[str]) -> str:
    more = len(items) - _SHOWN
    return "; ".join(items[:_SHOWN]) + (f" (+{more} more)" if more > 0 else "")


def recompute_pack_verdict(
    pack_dir: str | Path, sealed: Collection[str], *, report_assurance: str = "report"
) -> VerdictCheck:
    """Recompute the final verdict of the pack at ``pack_dir`` from its ``sealed`` files.

    ``sealed`` holds the pack-relative paths whose checksums matched; nothing else is read. With
    ``report_assurance="off"`` the reports are not checked at all, this recomputation included.
    """
    root = Path(pack_dir)
    if report_assurance == "off":
        return VerdictCheck(True, "info", "final verdict not recomputed (report assurance off)")
    if layout.FINAL_VERDICT_JSON not in sealed:
        return VerdictCheck(False, "reports", f"{layout.FINAL_VERDICT_JSON} is missing or unsealed")
    if layout.SCENARIOS not in sealed:
        return VerdictCheck(
            True,
            "info",
            f"final verdict not recomputed: the pack has no {layout.SCENARIOS} to classify reports",
        )
    try:
        return _recompute(root, sealed)
    except _Unreadable as exc:
        return VerdictCheck(False, "reports", f"final verdict cannot be recomputed: {exc}")


def _recompute(root: Path, sealed: Collection[str]) -> VerdictCheck:
    recorded = _read(root, layout.FINAL_VERDICT_JSON, "final verdict")
    scenarios = _read(root, layout.SCENARIOS, "scenario manifest")
    if schema_errors(scenarios, "scenarios", "invarlock_packs"):
        raise _Unreadable(f"{layout.SCENARIOS} does not match its schema")
    observations, unexplained = _observations(root, sealed)
    fresh = decide(
        scenario_rules(scenarios),
        observations,
        _models(recorded, observations),
        informational_min_fraction=_threshold(recorded),
    )
    problems = _kind_problems(scenarios) + _compare(recorded, fresh)
    if problems:
        return VerdictCheck(False, "reports", _listed(problems), fresh)
    note = (
        f"; {len(unexplained)} reports without edit metadata are not part of it"
        if unexplained
        else ""
    )
    return VerdictCheck(
        True,
        "reports",
        f"final verdict {fresh.verdict} recomputed from {len(observations)} reports{note}",
        fresh,
    )
