"""Canonical JSON and SHA-256 digests: the only byte form that InvarLock hashes or signs.

Canonical JSON is ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
allow_nan=False)`` encoded as UTF-8. NaN and infinities are rejected, so a digest never depends
on a float spelling that other JSON parsers would refuse.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = [
    "canonical_digest",
    "canonical_json",
    "file_sha256",
    "prefixed",
    "sha256_hex",
]

_CHUNK = 1 << 20


def canonical_json(value: Any) -> bytes:
    """Return the canonical UTF-8 JSON bytes of ``value``.

    Raises ``ValueError`` for NaN or infinite floats and ``TypeError`` for values JSON cannot hold.
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def canonical_digest(value: Any) -> str:
    """Hex SHA-256 of the canonical JSON of ``value``."""
    return sha256_hex(canonical_json(value))


def prefixed(hex_digest: str) -> str:
    """``"sha256:<hex>"``: the form digests take inside reports and manifests."""
    return f"sha256:{hex_digest}"


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
