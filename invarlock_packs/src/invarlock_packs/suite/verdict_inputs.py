"""Reading a suite run directory for the verdict: scenarios, models, reports and their sidecars.

The layout is the suite's (seeds 001/003)::

    OUT/state/scenarios.json                      the effective (filtered) scenario manifest
    OUT/state/models.json                         {"models": [{"slug": ..., "source": ...}]}
    OUT/<slug>/reports/baseline/                  the baseline's own report (noop subject)
    OUT/<slug>/reports/<scenario>/run_<n>/        evaluation.report.json + sidecars (edits)
    OUT/<slug>/reports/errors/<scenario>/         evaluation.report.json + sidecars (error fixtures)

Every JSON file is read with the core's strict reader; a malformed file is a one-line
:class:`~invarlock_core.errors.InputError`. A missing report is not an error here: the verdict
counts it as missing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from invarlock_core.errors import InputError
from invarlock_core.json_files import read_json_object
from invarlock_core.schema_validation import schema_errors
from invarlock_packs import layout
from invarlock_packs.nested_reports import slug as safe_slug
from invarlock_packs.verdict_rules import (
    ERROR_KINDS,
    RunObservation,
    ScenarioRule,
    observe_report,
    scenario_rules,
)

__all__ = [
    "BASELINE_DIR",
    "ERRORS_DIR",
    "MODELS_FILE",
    "PROBE_SIDECARS",
    "SCENARIOS_FILE",
    "LoadedReport",
    "RunEvidence",
    "load_run",
    "report_directories",
]

SCENARIOS_FILE: Final = "state/scenarios.json"
MODELS_FILE: Final = "state/models.json"
BASELINE_DIR: Final = "baseline"
ERRORS_DIR: Final = "errors"
PROBE_SIDECARS: Final = ("rmt_probe.json", "ve_probe.json")
_RUN_DIR = re.compile(r"^run_(\d+)$")


@attrs.frozen
class LoadedReport:
    """One report of the run with what sits beside it."""

    observation: RunObservation
    report: Mapping[str, Any]
    edit_metadata: Mapping[str, Any] | None
    probes: Mapping[str, Mapping[str, Any]]
    """Probe sidecars beside the report (``rmt_probe.json``, ``ve_probe.json``), by file name."""


@attrs.frozen
class RunEvidence:
    """Everything the verdict and its sidecars are computed from."""

    run_dir: Path
    scenarios: Mapping[str, Any]
    """The parsed ``state/scenarios.json``."""
    rules: tuple[ScenarioRule, ...]
    models: tuple[str, ...]
    reports: tuple[LoadedReport, ...]
    baselines: Mapping[str, Mapping[str, Any]]
    """Each model's baseline report (a noop subject), when the run has one."""

    def scenario(self, scenario_id: str) -> Mapping[str, Any]:
        """The manifest entry of ``scenario_id``."""
        return next(s for s in self.scenarios["scenarios"] if s["id"] == scenario_id)


def _read_scenarios(run_dir: Path) -> Mapping[str, Any]:
    document = read_json_object(run_dir / SCENARIOS_FILE, what="scenario manifest")
    problems = schema_errors(document, "scenarios", "invarlock_packs")
    if problems:
        raise InputError(f"{run_dir / SCENARIOS_FILE} does not match its schema: {problems[0]}")
    ids = [s["id"] for s in document["scenarios"]]
    if len(set(ids)) != len(ids):
        raise InputError(f"{run_dir / SCENARIOS_FILE} lists a scenario id twice")
    return document


def _read_models(run_dir: Path) -> tuple[str, ...]:
    document = read_json_object(run_dir / MODELS_FILE, what="model list")
    entries = document.get("models")
    if not isinstance(entries, list) or not all(
        isinstance(m, Mapping) and isinstance(m.get("slug"), str) for m in entries
    ):
        raise InputError(f"{run_dir / MODELS_FILE} must hold models: [{{slug: ...}}, ...]")
    slugs = tuple(str(m["slug"]) for m in entries)
    for value in slugs:
        if safe_slug(value) != value:
            raise InputError(f"{run_dir / MODELS_FILE}: model slug {value!r} is not a safe name")
    if len(set(slugs)) != len(slugs):
        raise InputError(f"{run_dir / MODELS_FILE} lists a model slug twice")
    return slugs


def report_directories(run_dir: Path, model: str, rule: ScenarioRule) -> list[Path]:
    """Where the reports of ``rule`` on ``model`` live (existing directories, in run order)."""
    reports = run_dir / model / "reports"
    if rule.kind in ERROR_KINDS:
        directory = reports / ERRORS_DIR / rule.id
        return [directory] if (directory / layout.REPORT_FILE).is_file() else []
    scenario_dir = reports / rule.id
    runs = [
        (int(match.group(1)), path)
        for path in (scenario_dir.iterdir() if scenario_dir.is_dir() else [])
        if (match := _RUN_DIR.match(path.name)) and (path / layout.REPORT_FILE).is_file()
    ]
    return [path for _, path in sorted(runs)]


def _load_report(run_dir: Path, model: str, rule: ScenarioRule, directory: Path) -> LoadedReport:
    report = read_json_object(directory / layout.REPORT_FILE, what="evaluation report")
    meta_path = directory / layout.EDIT_METADATA
    meta = read_json_object(meta_path, what="edit metadata") if meta_path.is_file() else None
    category = meta.get("category") if meta is not None else None
    probes = {
        name: read_json_object(directory / name, what="probe sidecar")
        for name in PROBE_SIDECARS
        if (directory / name).is_file()
    }
    observation = observe_report(
        report,
        model=model,
        scenario_id=rule.id,
        where=(directory / layout.REPORT_FILE).relative_to(run_dir).as_posix(),
        category=category if isinstance(category, str) else None,
    )
    return LoadedReport(observation, report, meta, probes)


def _baseline(run_dir: Path, model: str) -> Mapping[str, Any] | None:
    path = run_dir / model / "reports" / BASELINE_DIR / layout.REPORT_FILE
    return read_json_object(path, what="baseline report") if path.is_file() else None


def load_run(run_dir: str | Path) -> RunEvidence:
    """Read the scenario manifest, the model list and every report of a suite run directory."""
    root = Path(run_dir)
    if not root.is_dir():
        raise InputError(f"run directory {root} does not exist")
    scenarios = _read_scenarios(root)
    rules = scenario_rules(scenarios)
    models = _read_models(root)
    reports = tuple(
        _load_report(root, model, rule, directory)
        for model in models
        for rule in rules
        for directory in report_directories(root, model, rule)
    )
    baselines = {m: b for m in models if (b := _baseline(root, m)) is not None}
    return RunEvidence(root, scenarios, rules, models, reports, baselines)
