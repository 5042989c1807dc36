"""Writing a preset as TOML and JSON, validated against the core's preset schema.

Both files are written atomically; the TOML file is read back with :mod:`tomllib` and must equal
the JSON content (TOML has no null: keys whose value is ``None`` are left out of the TOML file).
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from invarlock_core.atomic import atomic_write_json, atomic_write_text
from invarlock_core.errors import SchemaError
from invarlock_core.schema_validation import schema_errors

__all__ = ["to_toml", "write_preset"]

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"TOML presets cannot hold {value!r}")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_scalar(item) for item in value) + "]"
    raise ValueError(f"cannot write {type(value).__name__} into a TOML preset")


def _drop_none(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value


def to_toml(data: Mapping[str, Any]) -> str:
    """A TOML document for nested tables of scalars and scalar lists (``None`` values dropped)."""
    lines: list[str] = []

    def emit(table: Mapping[str, Any], path: list[str]) -> None:
        scalars = [(k, v) for k, v in table.items() if not isinstance(v, Mapping)]
        tables = [(k, v) for k, v in table.items() if isinstance(v, Mapping)]
        if path and (scalars or not tables):
            lines.append("")
            lines.append("[" + ".".join(_key(p) for p in path) + "]")
        lines.extend(f"{_key(k)} = {_scalar(v)}" for k, v in scalars)
        for key, sub in tables:
            emit(sub, [*path, key])

    emit(_drop_none(data), [])
    return "\n".join(lines).lstrip("\n") + "\n"


def write_preset(directory: Path, stem: str, preset: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``<stem>.toml`` and ``<stem>.json`` into ``directory``; returns both paths."""
    problems = schema_errors(preset, "preset")
    if problems:
        raise SchemaError(f"derived preset is invalid: {'; '.join(problems[:3])}")
    text = to_toml(preset)
    if tomllib.loads(text) != _drop_none(json.loads(json.dumps(preset))):
        raise SchemaError("derived preset does not round-trip through TOML")
    directory.mkdir(parents=True, exist_ok=True)
    toml_path = atomic_write_text(directory / f"{stem}.toml", text)
    json_path = atomic_write_json(directory / f"{stem}.json", preset)
    return toml_path, json_path
