"""Scenarios as data: the shipped catalogue, suite filtering, ``--scenario-ids`` and the run's manifest.

The catalogue (``invarlock_packs/data/suite_scenarios.json``, schema ``suite-scenarios``) lists every
default scenario of the seeds: 4 clean and 4 stress edits, 9 must-detect and 3 informational error
injections, plus 3 guard-focused injections that only the larger suites run. A run filters it once
(suite membership, then ``--scenario-ids`` exactly as given), resolves the ``:clean:`` sentinel from
the tuned parameters, and writes the result to ``OUT/state/scenarios.json``: task generation, disk
estimation and the final verdict all read that file, never the catalogue.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal

import attrs

from invarlock_core.atomic import atomic_write_json
from invarlock_core.editing import EditSpec
from invarlock_core.errors import ConfigError, UsageError
from invarlock_core.json_files import read_json
from invarlock_core.schema_validation import validate_instance
from invarlock_core.serialization import structure, unstructure

__all__ = [
    "CATALOGUE_FORMAT",
    "SCENARIOS_FORMAT",
    "Scenario",
    "ScenarioKind",
    "load_catalogue",
    "read_scenarios",
    "resolve_clean_edits",
    "select_scenarios",
    "write_scenarios",
]

CATALOGUE_FORMAT: Final = "invarlock-suite-catalogue-v1"
SCENARIOS_FORMAT: Final = "invarlock-suite-scenarios-v1"
_SCHEMA: Final = "suite-scenarios"
_CLEAN: Final = "clean"

ScenarioKind = Literal[
    "clean",
    "stress_required_fail",
    "stress_informational",
    "error_must_detect",
    "error_informational",
]


@attrs.frozen
class Scenario:
    """One scenario of a suite; ``category`` always equals ``kind``."""

    id: str
    kind: ScenarioKind
    edit_template: str
    artifact_class: str
    intent: str
    primary_guard: str | None
    edit: str = ""
    """The spec actually applied (``edit_template`` with ``:clean:`` resolved); empty until resolved."""
    runs: int = 1
    suites: tuple[str, ...] | None = None

    @property
    def category(self) -> str:
        return self.kind

    @property
    def edit_type(self) -> str:
        return EditSpec.parse(self.edit_template).name

    @property
    def is_error(self) -> bool:
        return self.kind.startswith("error_")

    @property
    def is_clean(self) -> bool:
        return _CLEAN in EditSpec.parse(self.edit_template).args

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = unstructure(self)
        data.update(category=self.category, edit_type=self.edit_type)
        data["suites"] = list(self.suites) if self.suites is not None else None
        return data


def _from_document(data: Any, what: str) -> tuple[Scenario, ...]:
    validate_instance(data, _SCHEMA, "invarlock_packs", what=what)
    entries = []
    for raw in data["scenarios"]:
        fields = {k: v for k, v in raw.items() if k not in ("category", "edit_type")}
        if fields.get("suites") is not None:
            fields["suites"] = tuple(fields["suites"])
        entries.append(structure(fields, Scenario))
    ids = [entry.id for entry in entries]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ConfigError(f"{what}: scenario id {duplicates[0]!r} appears twice")
    return tuple(entries)


def load_catalogue() -> tuple[Scenario, ...]:
    """Every shipped scenario, in catalogue order."""
    text = (
        resources.files("invarlock_packs").joinpath("data/suite_scenarios.json").read_text("utf-8")
    )
    return _from_document(json.loads(text), "shipped scenario catalogue")


def select_scenarios(
    catalogue: Sequence[Scenario],
    suite: str,
    ids: Sequence[str] | None = None,
    *,
    errors: bool = True,
) -> tuple[Scenario, ...]:
    """The suite's scenarios, or exactly ``ids`` (in catalogue order) when given.

    A scenario without ``suites`` belongs to every suite. ``ids`` are never expanded back to the
    defaults; an unknown id is a :class:`UsageError`. ``errors=False`` (``RUN_ERROR_INJECTION=false``)
    drops the error injections of a default selection.
    """
    if ids:
        known = {scenario.id for scenario in catalogue}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise UsageError(
                f"unknown scenario id {unknown[0]!r}; valid: {', '.join(s.id for s in catalogue)}"
            )
        wanted = set(ids)
        return tuple(s for s in catalogue if s.id in wanted)
    return tuple(
        s
        for s in catalogue
        if (s.suites is None or suite in s.suites) and (errors or not s.is_error)
    )


def _named_args(params: Mapping[str, Any]) -> list[str]:
    def text(value: Any) -> str:
        return str(value).lower() if isinstance(value, bool) else str(value)

    return [f"{key}={text(value)}" for key, value in sorted(params.items())]


def resolve_clean_edits(
    scenarios: Iterable[Scenario],
    tuned: Mapping[str, Mapping[str, Any]],
    *,
    clean_runs: int,
    stress_runs: int,
) -> tuple[Scenario, ...]:
    """Fill ``edit`` (``:clean:`` replaced by the tuned defaults as named arguments) and ``runs``.

    ``tuned`` maps edit names to their default tuned parameters (the tuned-params file's ``edits``);
    per-model overrides still apply when the edit is created, from the same file.
    """
    resolved = []
    for scenario in scenarios:
        spec = EditSpec.parse(scenario.edit_template)
        if _CLEAN in spec.args:
            if spec.name not in tuned:
                raise ConfigError(
                    f"scenario {scenario.id}: the tuned edit params have no defaults for {spec.name}"
                )
            args: list[str] = []
            for arg in spec.args:
                args += _named_args(tuned[spec.name]) if arg == _CLEAN else [arg]
            spec = EditSpec(spec.name, tuple(args))
        runs = 1
        if scenario.kind == "clean":
            runs = clean_runs
        elif scenario.kind.startswith("stress_"):
            runs = stress_runs
        resolved.append(attrs.evolve(scenario, edit=str(spec), runs=runs))
    return tuple(resolved)


def write_scenarios(path: Path, scenarios: Sequence[Scenario]) -> Path:
    """Write the effective manifest (``OUT/state/scenarios.json``), schema-checked first."""
    document = {"format": SCENARIOS_FORMAT, "scenarios": [s.to_json() for s in scenarios]}
    validate_instance(document, _SCHEMA, "invarlock_packs", what="effective scenario manifest")
    return atomic_write_json(path, document)


def read_scenarios(path: Path) -> tuple[Scenario, ...]:
    """Read a run's effective manifest back."""
    return _from_document(read_json(path, what="scenario manifest"), str(path))
