"""Reading JSON on a trust path: strict, bounded, one-line exit-coded errors.

Every JSON document that a later step trusts (reports, manifests, signature bundles, capsules)
is parsed here. The parse is strict in four ways a plain ``json.loads`` is not:

- a duplicate key in any object is refused (``{"verdict":"FAIL","verdict":"PASS"}`` has no single
  meaning, and two readers could disagree on it);
- ``NaN``, ``Infinity`` and ``-Infinity`` are refused (they are not JSON and cannot be hashed in
  canonical form);
- nesting deeper than :data:`MAX_JSON_DEPTH` is refused before parsing, so a 100k-deep document
  is a one-line error rather than a ``RecursionError``;
- documents larger than :data:`MAX_JSON_BYTES` are refused.

The write side is :mod:`invarlock_core.atomic`.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from pathlib import Path
from typing import Any, Final

from invarlock_core.errors import InputError, InvarlockError

__all__ = [
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "StrictJSONError",
    "parse_json_strict",
    "read_json",
    "read_json_object",
]

MAX_JSON_BYTES: Final = 64 * 1024 * 1024
"""Upper bound on any JSON document read on a trust path."""
MAX_JSON_DEPTH: Final = 128
"""Upper bound on the nesting of arrays and objects (our artifacts nest fewer than 16 levels)."""

# A JSON string token (escapes included); removed before counting brackets so that brackets
# inside strings do not count. Invalid documents are caught by the parser afterwards.
_STRING_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class StrictJSONError(ValueError):
    """A document is not strict JSON (syntax, duplicate key, non-finite number, depth, size)."""


def _reject_constant(token: str) -> Any:
    raise StrictJSONError(f"non-finite number {token} is not allowed")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise StrictJSONError(f"duplicate key {key[:80]!r}")
        result[key] = value
    return result


def _depth(data: bytes) -> int:
    """The maximum bracket nesting of ``data``, ignoring brackets inside strings."""
    brackets = b"".join(_BRACKETS.findall(_STRING_TOKEN.sub(b'""', data)))
    return max(accumulate(_STEP[b] for b in brackets), default=0)


def parse_json_strict(
    data: bytes | str, *, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH
) -> Any:
    """Parse strict UTF-8 JSON; raise :class:`StrictJSONError` (a ``ValueError``) otherwise."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > max_bytes:
        raise StrictJSONError(f"document is larger than {max_bytes} bytes")
    if _depth(raw) > max_depth:
        raise StrictJSONError(f"document nests deeper than {max_depth} levels")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StrictJSONError(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_object, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise StrictJSONError(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:  # pragma: no cover - the depth bound above keeps the parser shallow
        raise StrictJSONError("document nests too deeply") from None


def read_json(path: str | Path, *, what: str, error: type[InvarlockError] = InputError) -> Any:
    """Parse ``path`` strictly; a missing, unreadable or malformed file raises ``error`` naming ``what``."""
    file = Path(path)
    try:
        with open(file, "rb") as handle:
            raw = handle.read(MAX_JSON_BYTES + 1)
    except FileNotFoundError:
        raise error(f"{what} {file} does not exist") from None
    except OSError as exc:
        raise error(f"cannot read {what} {file}: {exc.strerror or exc}") from None
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"cannot read {what} {file}: {exc}") from None
    try:
        return parse_json_strict(raw)
    except StrictJSONError as exc:
        raise error(f"{what} {file} is not valid JSON: {exc}") from None


def read_json_object(
    path: str | Path, *, what: str, error: type[InvarlockError] = InputError
) -> dict[str, Any]:
    """:func:`read_json`, requiring a JSON object at the top."""
    data = read_json(path, what=what, error=error)
    if not isinstance(data, dict):
        raise error(f"{what} {path} must hold a JSON object, found {type(data).__name__}")
    return data
