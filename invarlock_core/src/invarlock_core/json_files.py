"""Reading JSON files with one-line, exit-coded errors (the write side is :mod:`invarlock_core.atomic`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from invarlock_core.errors import InputError, InvarlockError

__all__ = ["read_json", "read_json_object"]


def read_json(path: str | Path, *, what: str, error: type[InvarlockError] = InputError) -> Any:
    """Parse ``path``; a missing, unreadable or malformed file raises ``error`` naming ``what``."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} {file} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read {what} {file}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{what} {file} is not valid JSON: {exc}") from None


def read_json_object(
    path: str | Path, *, what: str, error: type[InvarlockError] = InputError
) -> dict[str, Any]:
    """:func:`read_json`, requiring a JSON object at the top."""
    data = read_json(path, what=what, error=error)
    if not isinstance(data, dict):
        raise error(f"{what} {path} must hold a JSON object, found {type(data).__name__}")
    return data
