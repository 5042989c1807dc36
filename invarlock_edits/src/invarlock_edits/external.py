"""Metadata for edits that do not use :class:`~invarlock_edits.streaming_edit.StreamingEdit`.

A third-party :class:`~invarlock_core.editing.Edit` only has to write a checkpoint and return a
mapping. If it did not write ``edit_metadata.json`` itself, :func:`describe_external_edit` builds
one around what it returned: coverage measured by comparing the output with the baseline, and
digests of both, so every edit's output carries the same evidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from invarlock_core.editing import Edit, EditSpec
from invarlock_core.errors import PluginError
from invarlock_core.models import checkpoint_files_digest
from invarlock_edits.checkpoint import Checkpoint
from invarlock_edits.diff import diff_checkpoints
from invarlock_edits.metadata import (
    DEPLOYMENT_FLAGS,
    NO_LABELS,
    SubjectLabels,
    read_edit_metadata,
    write_edit_metadata,
)

__all__ = ["describe_external_edit"]


def describe_external_edit(
    edit: Edit,
    spec: EditSpec,
    *,
    baseline: Path,
    out: Path,
    seed: int,
    returned: Mapping[str, Any],
    labels: SubjectLabels = NO_LABELS,
) -> dict[str, Any]:
    """The validated metadata of ``edit``'s output in ``out``, writing it when the edit did not."""
    existing = read_edit_metadata(out)
    if existing is not None:
        return existing
    detection = returned.get("detection")
    if edit.artifact_class == "fault_injection_fixture" and not isinstance(detection, Mapping):
        raise PluginError(
            f"edit {edit.name} is a fault injection but returned no 'detection' "
            "(requirement and guards expected to catch it)"
        )
    _, output_files = checkpoint_files_digest(out)
    coverage = diff_checkpoints(Checkpoint.open(baseline), Checkpoint.open(out))
    return write_edit_metadata(
        out,
        edit_type=edit.name,
        artifact_class=edit.artifact_class,
        spec=str(spec),
        seed=seed,
        baseline=baseline,
        output_files=output_files,
        coverage=coverage.to_json(None),
        producer=_producer(edit),
        labels=labels,
        resolved_spec=str(returned.get("resolved_spec", spec)),
        storage_format=str(returned.get("storage_format", "dense_safetensors")),
        deployment={**DEPLOYMENT_FLAGS, **dict(returned.get("deployment", {}))},
        parameters=dict(returned.get("parameters", {})),
        details={k: v for k, v in returned.items() if k not in _ENVELOPE},
        detection=dict(detection) if isinstance(detection, Mapping) else None,
    )


_ENVELOPE = {"resolved_spec", "storage_format", "deployment", "parameters", "detection"}


def _producer(edit: Edit) -> dict[str, str]:
    """The distribution that ships ``edit``'s class, from installed package metadata."""
    import importlib.metadata

    package = type(edit).__module__.split(".")[0]
    for distribution in importlib.metadata.packages_distributions().get(package, []):
        try:
            return {"name": distribution, "version": importlib.metadata.version(distribution)}
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover - broken install
            continue
    return {"name": package, "version": "unknown"}
