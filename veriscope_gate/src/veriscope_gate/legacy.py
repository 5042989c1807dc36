"""Capsules from the reference Veriscope v0 tool that predate some contract keys.

The reference tool's published capsules lack keys that the v1 contract lists as required:
``runner_signal`` and ``first_fail_iter`` in the results, ``determinism_status``,
``dependencies`` and ``env_capture.deny_exact`` / ``deny_regex`` in the run config, and the
``governance_head`` that binds a summary to its governance log. :func:`contract_errors` separates
those absences from every other schema problem, so ``validate`` can name each missing key (an
error by default, one warning each with ``--allow-legacy``) and ``report`` can render the capsule
with a "legacy capsule" line. Absent nullable keys read as null.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from invarlock_core.schema_validation import schema_errors
from veriscope_gate.capsule import RESULTS, RUN_CONFIG, SUMMARY

__all__ = ["GOVERNANCE_HEAD", "LEGACY_KEYS", "contract_errors", "missing_keys"]

GOVERNANCE_HEAD: Final = "governance_head"
LEGACY_KEYS: Final[dict[str, tuple[tuple[str, ...], ...]]] = {
    SUMMARY: (("runner_signal",), ("first_fail_iter",)),
    RESULTS: (("runner_signal",),),
    RUN_CONFIG: (
        ("determinism_status",),
        ("dependencies",),
        ("env_capture", "deny_exact"),
        ("env_capture", "deny_regex"),
    ),
}
"""Per artifact, the contract keys (as paths) that reference v0 capsules may lack."""


def _absent(data: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    node: Any = data
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, Mapping) else None
    return isinstance(node, Mapping) and path[-1] not in node


def missing_keys(name: str, data: Mapping[str, Any]) -> list[str]:
    """The legacy-tolerated keys of artifact ``name`` that ``data`` lacks, dotted, in order."""
    return [".".join(path) for path in LEGACY_KEYS.get(name, ()) if _absent(data, path)]


def _required_message(path: tuple[str, ...]) -> str:
    where = "$" + "".join(f".{key}" for key in path[:-1])
    return f"{where}: '{path[-1]}' is a required property"


def contract_errors(
    name: str, data: Mapping[str, Any], schema: str
) -> tuple[list[str], list[str]]:
    """``(schema problems other than legacy absences, legacy keys missing)`` of one artifact."""
    absent = [p for p in LEGACY_KEYS.get(name, ()) if _absent(data, p)]
    tolerated = {_required_message(p) for p in absent}
    errors = [e for e in schema_errors(data, schema, "veriscope_gate") if e not in tolerated]
    return errors, [".".join(p) for p in absent]
