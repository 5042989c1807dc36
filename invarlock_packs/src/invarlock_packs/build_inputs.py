"""Inputs of ``build_pack``, read and checked before anything is staged.

Each report is read once (bounded), must be an ``evaluation.report.json`` with (by default) its
``runtime.manifest.json`` beside it, and gets a unique ``reports/<model>/<scenario>/<run>``
place. Metadata documents are parsed and schema-checked, and edit metadata must agree with the
suite's ``scenarios.json``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from invarlock_core.errors import InputError, SchemaError, UsageError
from invarlock_core.schema_validation import schema_errors, validate_instance
from invarlock_packs import layout
from invarlock_packs.nested_reports import ReportSummary, slug, summarize_report
from invarlock_packs.provenance import collect_environment
from invarlock_packs.safe_paths import (
    MAX_JSON_BYTES,
    UnsafePathError,
    parse_json_bytes,
    read_bounded,
)
from invarlock_packs.scenario_consistency import edit_metadata_problems, scenarios_by_id

__all__ = [
    "SIMPLE_NAME",
    "PlannedReport",
    "ReportInput",
    "check_scenarios",
    "metadata_documents",
    "plan_reports",
    "read_json_input",
]

SIMPLE_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
"""Names of metadata documents, materials and summaries."""
_SCHEMAS: Final = "invarlock_packs"


@attrs.frozen
class ReportInput:
    """A report to pack, with optional explicit identity (otherwise read from the report)."""

    path: Path = attrs.field(converter=Path)
    model: str | None = None
    edit: str | None = None
    run: str | None = None
    category: str | None = None


def read_json_input(path: Path, what: str) -> tuple[bytes, Any]:
    try:
        raw = read_bounded(path, MAX_JSON_BYTES)
        return raw, parse_json_bytes(raw)
    except FileNotFoundError as exc:
        raise InputError(f"{what} {path} does not exist") from exc
    except UnsafePathError as exc:
        raise InputError(f"{what} {path}: {exc}") from exc
    except ValueError as exc:
        raise InputError(f"{what} {path} is not valid JSON: {exc}") from exc


@attrs.frozen
class PlannedReport:
    """One report, read and placed, ready to be copied into the stage."""

    source: Path
    raw: bytes
    summary: ReportSummary
    sidecars: tuple[tuple[str, Path], ...]
    has_runtime_manifest: bool
    edit_metadata: dict[str, Any] | None

    @property
    def directory(self) -> str:
        """``reports/<model>/<scenario>/<run>`` inside the pack."""
        return f"{layout.REPORTS_DIR}/{self.summary.model}/{self.summary.edit}/{self.summary.run}"


def _edit_metadata(directory: Path) -> dict[str, Any] | None:
    """The schema-checked ``edit_metadata.json`` beside a report, if there is one."""
    path = directory / layout.EDIT_METADATA
    if not path.is_file():
        return None
    _, meta = read_json_input(path, "edit metadata")
    problems = schema_errors(meta, "edit-metadata", "invarlock_core")
    if problems:
        raise SchemaError(f"edit metadata {path} does not match its schema: {problems[0]}")
    return dict(meta)


def _plan_report(item: Path | ReportInput, require_runtime_manifest: bool) -> PlannedReport:
    spec = item if isinstance(item, ReportInput) else ReportInput(path=Path(item))
    if spec.path.name != layout.REPORT_FILE:
        raise InputError(f"--report must name an {layout.REPORT_FILE} file, got {spec.path}")
    raw, data = read_json_input(spec.path, "report")
    if not isinstance(data, dict):
        raise InputError(f"report {spec.path} is not a JSON object")
    directory = spec.path.parent
    has_runtime = (directory / layout.RUNTIME_MANIFEST).is_file()
    if require_runtime_manifest and not has_runtime:
        raise InputError(
            f"report {spec.path} has no {layout.RUNTIME_MANIFEST} beside it (runtime provenance is required)"
        )
    meta = _edit_metadata(directory)
    category = meta.get("category") if meta else None
    summary = summarize_report(
        data,
        model=spec.model,
        edit=spec.edit or (str(meta["scenario_id"]) if meta else None),
        category=spec.category or (category if isinstance(category, str) else None),
    )
    summary = attrs.evolve(
        summary,
        model=slug(summary.model),
        edit=slug(summary.edit),
        run=slug(spec.run) if spec.run else "",
    )
    sidecars = tuple(
        (name, directory / name) for name in layout.REPORT_SIDECARS if (directory / name).is_file()
    )
    for name, path in sidecars:
        if name.endswith(".json"):
            read_json_input(path, f"report sidecar {name}")
    return PlannedReport(spec.path, raw, summary, sidecars, has_runtime, meta)


def _assign_runs(plans: list[PlannedReport]) -> list[PlannedReport]:
    """Give every report a unique ``<model>/<edit>/<run>``: explicit runs kept, others run1, run2..."""
    taken = {(p.summary.model, p.summary.edit, p.summary.run) for p in plans if p.summary.run}
    if len(taken) != sum(1 for p in plans if p.summary.run):
        raise InputError("two reports were given the same model/edit/run")
    result = []
    for plan in plans:
        if plan.summary.run:
            result.append(plan)
            continue
        index = 1
        while (plan.summary.model, plan.summary.edit, f"run{index}") in taken:
            index += 1
        taken.add((plan.summary.model, plan.summary.edit, f"run{index}"))
        result.append(attrs.evolve(plan, summary=attrs.evolve(plan.summary, run=f"run{index}")))
    return result


def plan_reports(
    reports: Sequence[Path | str | ReportInput], *, require_runtime_manifests: bool
) -> list[PlannedReport]:
    """Read, check and place every report."""
    return _assign_runs(
        [
            _plan_report(r if isinstance(r, ReportInput) else Path(r), require_runtime_manifests)
            for r in reports
        ]
    )


def metadata_documents(
    metadata: Mapping[str, Path | Mapping[str, Any]] | None,
) -> dict[str, bytes]:
    docs: dict[str, bytes] = {}
    items = dict(metadata or {})
    if "environment" not in items:
        items["environment"] = collect_environment()
    for name, value in items.items():
        if not SIMPLE_NAME.match(name):
            raise UsageError(f"metadata name {name!r} is not a simple name")
        if isinstance(value, Mapping):
            data: Any = dict(value)
            raw = (json.dumps(data, sort_keys=True, indent=2, allow_nan=False) + "\n").encode()
        else:
            raw, data = read_json_input(Path(value), f"metadata {name}")
        if not isinstance(data, dict):
            raise InputError(f"metadata {name} is not a JSON object")
        if name == "scenarios":
            validate_instance(data, "scenarios", _SCHEMAS, what="metadata scenarios")
        docs[name] = raw
    return docs


def check_scenarios(plans: Sequence[PlannedReport], meta_docs: Mapping[str, bytes]) -> None:
    with_meta = [p for p in plans if p.edit_metadata is not None]
    if not with_meta:
        return
    if "scenarios" not in meta_docs:
        raise InputError(
            f"{with_meta[0].source.parent / layout.EDIT_METADATA} needs the suite's scenarios.json "
            "(metadata 'scenarios', --scenarios) to be checked against"
        )
    by_id = scenarios_by_id(json.loads(meta_docs["scenarios"]))
    for plan in with_meta:
        assert plan.edit_metadata is not None
        problems = edit_metadata_problems(
            str(plan.source.parent / layout.EDIT_METADATA), plan.edit_metadata, by_id
        )
        if problems:
            raise InputError(problems[0])
