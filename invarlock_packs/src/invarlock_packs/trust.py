"""Trust stores: the signer fingerprints a reviewer accepts.

A trust store is a JSON file: either a list of fingerprints, or an object with a
``trusted_signers`` or ``fingerprints`` list. List entries are fingerprint strings or objects
with a ``fingerprint`` field (other fields, such as a name, are ignored). Without ``--trust-store``
the verifier uses ``$XDG_CONFIG_HOME/invarlock/trusted-signers.json`` (``~/.config`` by default)
when that file exists.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from invarlock_core.errors import InputError, UsageError
from invarlock_packs.safe_paths import UnsafePathError, read_json_bounded
from invarlock_packs.signing import normalize_fingerprint

__all__ = ["default_trust_store_path", "load_trust_store", "parse_trust_store"]

_MAX_TRUST_STORE_BYTES = 1024 * 1024


def default_trust_store_path() -> Path:
    """``$XDG_CONFIG_HOME/invarlock/trusted-signers.json``, ``~/.config`` when unset."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "invarlock" / "trusted-signers.json"


def parse_trust_store(data: Any, *, source: str = "trust store") -> frozenset[str]:
    """The normalised fingerprints in a parsed trust store document."""
    entries: Any = data
    if isinstance(data, dict):
        for key in ("trusted_signers", "fingerprints"):
            if key in data:
                entries = data[key]
                break
        else:
            raise UsageError(f"{source} has neither a trusted_signers nor a fingerprints list")
    if not isinstance(entries, list):
        raise UsageError(f"{source} is not a list of fingerprints")
    result: set[str] = set()
    for entry in entries:
        value = entry.get("fingerprint") if isinstance(entry, dict) else entry
        if not isinstance(value, str):
            raise UsageError(f"{source} has an entry without a fingerprint: {entry!r}")
        result.add(normalize_fingerprint(value))
    return frozenset(result)


def load_trust_store(path: Path) -> frozenset[str]:
    """Read and parse a trust store file; one-line usage error when it is unreadable or invalid."""
    try:
        data = read_json_bounded(path, _MAX_TRUST_STORE_BYTES)
    except FileNotFoundError as exc:
        raise InputError(f"trust store {path} does not exist") from exc
    except (OSError, UnsafePathError, ValueError) as exc:
        raise UsageError(f"trust store {path} is not readable JSON: {exc}") from exc
    return parse_trust_store(data, source=f"trust store {path}")
