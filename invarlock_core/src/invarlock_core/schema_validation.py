"""JSON Schemas shipped as package data, and validation with one-line aggregated errors.

Every JSON artifact has a versioned schema in ``<package>/schemas/<name>.schema.json``.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import jsonschema

from invarlock_core.errors import SchemaError

__all__ = ["load_schema", "schema_errors", "validate_instance"]

_MAX_LISTED = 5


@functools.cache
def load_schema(name: str, package: str = "invarlock_core") -> dict[str, Any]:
    """Load ``<package>/schemas/<name>.schema.json``."""
    ref = resources.files(package).joinpath("schemas", f"{name}.schema.json")
    try:
        schema: dict[str, Any] = json.loads(ref.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SchemaError(f"no schema named {name!r} in {package}") from exc
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


@functools.cache
def _validator(name: str, package: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load_schema(name, package))


def schema_errors(instance: Any, name: str, package: str = "invarlock_core") -> list[str]:
    """Every violation of schema ``name`` as ``"<json path>: <message>"``, sorted by path."""
    errors = sorted(_validator(name, package).iter_errors(instance), key=lambda e: list(e.path))
    return [f"{e.json_path}: {e.message}" for e in errors]


def validate_instance(
    instance: Any, name: str, package: str = "invarlock_core", *, what: str | None = None
) -> None:
    """Raise :class:`SchemaError` (one line, first few problems) if ``instance`` violates ``name``."""
    problems = schema_errors(instance, name, package)
    if problems:
        shown = "; ".join(problems[:_MAX_LISTED])
        more = f" (+{len(problems) - _MAX_LISTED} more)" if len(problems) > _MAX_LISTED else ""
        raise SchemaError(f"{what or name} does not match schema {name}: {shown}{more}")
