"""Veriscope's cattrs converter (one per product) and JSON helpers for artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import cattrs

from invarlock_core.json_files import MAX_JSON_BYTES, StrictJSONError, parse_json_strict
from invarlock_core.serialization import make_converter
from invarlock_core.serialization import structure as core_structure
from veriscope_gate.errors import ArtifactError

__all__ = ["as_object", "converter", "read_json_object", "structure", "unstructure"]

T = TypeVar("T")

converter: cattrs.Converter = make_converter()
"""The Veriscope converter: frozen attrs values to JSON-ready data and back."""


def unstructure(value: Any) -> Any:
    """attrs value -> JSON-ready dicts/lists/scalars."""
    return converter.unstructure(value)


def structure(data: Any, cls: type[T]) -> T:
    """JSON-ready data -> ``cls``; raises :class:`ArtifactError` listing every problem on one line."""
    return core_structure(data, cls, conv=converter, error=ArtifactError)


def as_object(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty dict (for tolerant reads of artifacts)."""
    return value if isinstance(value, dict) else {}


def read_json_object(path: Path) -> dict[str, Any]:
    """Read a JSON object from ``path`` strictly; missing, unreadable, malformed (duplicate keys,
    NaN/Infinity, too deep, too large) or non-object files raise ArtifactError."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_JSON_BYTES + 1)
    except FileNotFoundError:
        raise ArtifactError(f"{path.name} is missing in {path.parent}") from None
    except OSError as exc:
        raise ArtifactError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = parse_json_strict(raw)
    except StrictJSONError as exc:
        raise ArtifactError(f"{path.name} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path.name} must hold a JSON object, found {type(data).__name__}")
    return data
