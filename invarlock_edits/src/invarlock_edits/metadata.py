"""``edit_metadata.json``: what an edit did, in schema ``invarlock/evidence-pack-edit-metadata-v1``.

The file sits next to the edited weights and records the artifact class, edit type, storage
format, deployment flags, resolved parameters, coverage (declared and measured: which tensors
changed and how many elements) and sha256 digests of every input and output file, so a reviewer
can tell exactly what the subject is and check that the files are the ones that were produced.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from invarlock_core.atomic import atomic_write_json
from invarlock_core.canonical import canonical_digest, file_sha256, prefixed
from invarlock_core.errors import SchemaError
from invarlock_core.json_files import read_json
from invarlock_core.models import checkpoint_files_digest
from invarlock_core.schema_validation import schema_errors, validate_instance
from invarlock_edits.checkpoint import METADATA_NAME

__all__ = [
    "DEPLOYMENT_FLAGS",
    "METADATA_SCHEMA",
    "NO_LABELS",
    "SCHEMA_NAME",
    "Detection",
    "SubjectLabels",
    "check_edit_output",
    "files_digest",
    "read_edit_metadata",
    "validate_edit_metadata",
    "write_edit_metadata",
]

METADATA_SCHEMA = "invarlock/evidence-pack-edit-metadata-v1"
"""The value of the ``schema`` field."""
SCHEMA_NAME = "edit_metadata"
"""The JSON Schema shipped as ``invarlock_edits/schemas/edit_metadata.schema.json``."""

DEPLOYMENT_FLAGS: dict[str, bool] = {
    "deployable": False,
    "packed_quantized_storage": False,
    "sparse_runtime": False,
    "factorized_runtime": False,
    "runtime_memory_reduction": False,
}
"""Validation subjects and fault fixtures are dense floating-point checkpoints: every flag false."""


@attrs.frozen
class Detection:
    """Which guard must (or is expected to) catch a fault injection."""

    requirement: str
    """``must_detect`` (required detection: the evaluation must FAIL) or ``informational``."""
    guards: tuple[str, ...]
    """Guards (or ``primary_metric``) any one of which is expected to flag the fixture."""
    probe: str | None = None
    """A probe sidecar the evidence-pack suite writes next to the report (``rmt_probe.json``)."""

    def to_json(self) -> dict[str, Any]:
        return {"requirement": self.requirement, "guards": list(self.guards), "probe": self.probe}


@attrs.frozen
class SubjectLabels:
    """How an evidence-pack suite labels an edited subject (checked against ``scenarios.json``)."""

    scenario_id: str | None = None
    """Default: the edit's name."""
    category: str | None = None


NO_LABELS = SubjectLabels()
"""No suite labels: the scenario id defaults to the edit's name."""


def write_edit_metadata(
    out: Path,
    *,
    edit_type: str,
    artifact_class: str,
    spec: str,
    seed: int,
    baseline: Path,
    output_files: Mapping[str, str],
    coverage: Mapping[str, Any],
    producer: Mapping[str, str],
    labels: SubjectLabels = NO_LABELS,
    **fields: Any,
) -> dict[str, Any]:
    """Assemble, validate and atomically write ``out/edit_metadata.json``; return the document.

    ``fields`` fill the edit-specific keys (``resolved_spec``, ``storage_format``, ``parameters``,
    ``tuned_params``, ``details``, ``detection``, ``deployment``); digests of the baseline's files
    are computed here, those of the output are given (they were hashed while being written).
    """
    input_digest, input_files = checkpoint_files_digest(baseline)
    metadata: dict[str, Any] = {
        "schema": METADATA_SCHEMA,
        "scenario_id": labels.scenario_id or edit_type,
        "artifact_class": artifact_class,
        "edit_type": edit_type,
        "edit_spec": spec,
        "resolved_spec": spec,
        "storage_format": "dense_safetensors",
        "deployment": dict(DEPLOYMENT_FLAGS),
        "parameters": {},
        "seed": seed,
        "tuned_params": None,
        "coverage": dict(coverage),
        "details": {},
        "detection": None,
        "input": {"path": str(baseline), "digest": input_digest, "files": input_files},
        "output": {"digest": files_digest(output_files), "files": dict(output_files)},
        "producer": dict(producer),
        **fields,
    }
    if labels.category:
        metadata["category"] = labels.category
    validate_edit_metadata(metadata, what=f"edit metadata of {edit_type}")
    atomic_write_json(out / METADATA_NAME, metadata)
    return metadata


def files_digest(files: Mapping[str, str]) -> str:
    """``sha256:<hex>`` over ``{relpath: hex}``: the same rule as the core's checkpoint digest."""
    return prefixed(canonical_digest(dict(files)))


def validate_edit_metadata(metadata: Any, *, what: str = METADATA_NAME) -> None:
    """Raise :class:`SchemaError` (exit 2, one line) unless ``metadata`` matches the schema."""
    validate_instance(metadata, SCHEMA_NAME, "invarlock_edits", what=what)


def read_edit_metadata(directory: str | Path) -> dict[str, Any] | None:
    """The validated ``edit_metadata.json`` of a checkpoint directory, or ``None`` when absent."""
    path = Path(directory) / METADATA_NAME
    if not path.is_file():
        return None
    metadata = read_json(path, what="edit metadata", error=SchemaError)
    validate_edit_metadata(metadata, what=str(path))
    result: dict[str, Any] = metadata
    return result


def check_edit_output(directory: str | Path) -> list[str]:
    """Problems with an edited checkpoint against its metadata (empty list: all files match).

    Checks the schema, that every output file listed exists with its recorded sha256, that no
    unlisted file sits next to them, and the combined output digest.
    """
    root = Path(directory)
    path = root / METADATA_NAME
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"{path}: unreadable ({exc})"]
    problems = schema_errors(metadata, SCHEMA_NAME, "invarlock_edits")
    if problems:
        return problems
    recorded: dict[str, str] = metadata["output"]["files"]
    for rel, expected in sorted(recorded.items()):
        file = root / rel
        if not file.is_file():
            problems.append(f"{rel}: missing")
        elif file_sha256(file) != expected:
            problems.append(f"{rel}: sha256 differs from edit_metadata.json")
    present = {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }
    for extra in sorted(present - set(recorded) - {METADATA_NAME}):
        problems.append(f"{extra}: not listed in edit_metadata.json")
    if files_digest(recorded) != metadata["output"]["digest"]:
        problems.append("output.digest does not match output.files")
    return problems
