"""Where a subject comes from: a checkpoint directory, or an edit plugin applied to the baseline.

An edited subject is written to ``OUT/subject`` (staged, then moved into place) with its
``edit_metadata.json``, and removed once the evaluation is over unless the request keeps it
(``--keep-subject``): real checkpoints are gigabytes, and the report already records the digest
of every file.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from invarlock_core.atomic import staged_directory
from invarlock_core.editing import EditSpec
from invarlock_core.json_files import read_json
from invarlock_core.plugins import Registries
from invarlock_core.schema_validation import validate_instance

__all__ = ["EDIT_METADATA_NAME", "EDIT_METADATA_SCHEMA", "Subject", "edit_metadata", "subject_checkpoint"]

EDIT_METADATA_NAME = "edit_metadata.json"
EDIT_METADATA_SCHEMA = "invarlock/evidence-pack-edit-metadata-v1"


@attrs.frozen
class Subject:
    """A subject checkpoint on disk, the edit metadata it carries, and how it was made."""

    path: Path
    metadata: dict[str, Any] | None
    edit: str | None = None
    """The edit spec that made it, ``None`` for a given checkpoint."""


def edit_metadata(subject: Path) -> dict[str, Any] | None:
    """The subject's schema-checked ``edit_metadata.json``, or ``None`` when it has none."""
    file = subject / EDIT_METADATA_NAME
    if not file.is_file():
        return None
    data = read_json(file, what="edit metadata")
    validate_instance(data, "edit-metadata", what=str(file))
    return dict(data)


def _apply_edit(spec_text: str, baseline: Path, target: Path, registries: Registries, seed: int) -> Subject:
    spec = EditSpec.parse(spec_text)
    edit = registries.edits.get(spec.name)
    with staged_directory(target, overwrite=True) as stage:
        metadata = {
            # The published envelope, for plugins that return bare metadata.
            "schema": EDIT_METADATA_SCHEMA,
            "scenario_id": str(spec),
            "artifact_class": edit.artifact_class,
            "edit_type": spec.name,
            **edit.apply(spec, baseline=baseline, out=stage, seed=seed),
        }
        if not (stage / EDIT_METADATA_NAME).exists():
            (stage / EDIT_METADATA_NAME).write_text(
                json.dumps(metadata, sort_keys=True, indent=2, allow_nan=False) + "\n",
                encoding="utf-8",
            )
    return Subject(path=target, metadata=edit_metadata(target) or metadata, edit=spec_text)


@contextlib.contextmanager
def subject_checkpoint(
    *,
    path: Path | None,
    edit: str | None,
    baseline: Path,
    out: Path,
    registries: Registries,
    seed: int,
    keep: bool,
) -> Iterator[Subject]:
    """The subject at ``path``, or made by ``edit`` into ``out/subject`` (removed afterwards
    unless ``keep``)."""
    if path is not None:
        yield Subject(path=path, metadata=edit_metadata(path))
        return
    target = out / "subject"
    created = not out.exists()
    try:
        yield _apply_edit(str(edit), baseline, target, registries, seed)
    finally:
        if not keep:
            shutil.rmtree(target, ignore_errors=True)
        if created:  # no empty --out is left behind when the evaluation fails
            with contextlib.suppress(OSError):
                out.rmdir()
