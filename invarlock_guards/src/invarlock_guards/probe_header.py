"""The header every probe document starts with (``rmt_probe.json``, ``ve_probe.json``).

The guards that write probe documents import it from here; :mod:`invarlock_guards.probes`, which
imports those guards, re-exports it.
"""

from __future__ import annotations

from typing import Any

from invarlock_core.guarding import GuardContext

__all__ = ["PROBE_SCHEMA_VERSION", "probe_header"]

PROBE_SCHEMA_VERSION = 1


def probe_header(kind: str, context: GuardContext) -> dict[str, Any]:
    """The fields every probe document starts with: ``kind``, ``schema_version``, tier and seed."""
    return {
        "kind": kind,
        "schema_version": PROBE_SCHEMA_VERSION,
        "tier": context.tier,
        "seed": context.seed,
    }
