"""``governance_log.jsonl``: an append-only, hash-chained log of run and operator events.

Each line is one event in the reference Veriscope v0 shape::

    {schema_version, rev, event, ts_utc, actor, payload, prev_hash, entry_hash}

``rev`` counts from 1, event names end in ``_v1`` (``run_started_v1``), the payload carries the
``run_id`` and ``outdir`` it is about, ``entry_hash`` is the SHA-256 hex of the canonical JSON of
the line without ``entry_hash``, and ``prev_hash`` is the previous line's ``entry_hash`` (null on
rev 1). Logs written by earlier versions of this package (``hash`` with a ``sha256:`` prefix,
``rev`` from 0, ``run_id``/``outdir`` at the top level) are read too, and chain-checked the same way.

The log vouches for results: the event written right after ``results_summary.json`` (its
``governance_head`` names the line before it) *seals* them, recording the digests of
``results.json`` and ``results_summary.json`` and the gate controls hash in
``payload.artifacts``. :func:`check_seal` rechecks those digests, so results edited after the
run, or a log cut short before its seal, no longer validate. Appends rewrite the file
atomically, so a reader never sees half a line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from invarlock_core.atomic import atomic_write_text
from invarlock_core.canonical import canonical_digest, canonical_json, prefixed, sha256_hex
from invarlock_core.json_files import StrictJSONError, parse_json_strict
from invarlock_core.schema_validation import schema_errors
from veriscope_gate.timeutil import utc_now

__all__ = [
    "ACTOR",
    "GOVERNANCE_LOG",
    "KNOWN_EVENTS",
    "SEALED_FILES",
    "GovernanceCheck",
    "append_event",
    "check_log",
    "check_seal",
    "log_head",
    "seal_results",
]

GOVERNANCE_LOG: Final = "governance_log.jsonl"
ACTOR: Final = "veriscope-gate"
SEALED_FILES: Final = ("results.json", "results_summary.json")
_BASE_EVENTS = ("run_started", "run_finished", "session_opened", "session_closed", "manual_override")
KNOWN_EVENTS: Final = frozenset({*_BASE_EVENTS, *(f"{name}_v1" for name in _BASE_EVENTS)})


def _entry_hash(event: Mapping[str, Any]) -> str:
    return canonical_digest({k: v for k, v in event.items() if k != "entry_hash"})


def _legacy_hash(event: Mapping[str, Any]) -> str:
    return prefixed(canonical_digest({k: v for k, v in event.items() if k != "hash"}))


def _link(event: Mapping[str, Any]) -> Any:
    """The value the next line's ``prev_hash`` must carry."""
    return event.get("entry_hash", event.get("hash"))


def _read_lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def _parse(line: str) -> Any:
    try:
        return parse_json_strict(line)
    except StrictJSONError:
        return None


def log_head(outdir: Path) -> dict[str, Any] | None:
    """``{"rev", "entry_hash"}`` of the last line of the log, or None when there is none."""
    lines = _read_lines(outdir / GOVERNANCE_LOG)
    last = _parse(lines[-1]) if lines else None
    if not isinstance(last, dict):
        return None
    return {"rev": last.get("rev"), "entry_hash": _link(last)}


def append_event(
    outdir: Path,
    event: str,
    *,
    run_id: str,
    run_outdir: str,
    payload: Mapping[str, Any] | None = None,
    actor: str = ACTOR,
) -> dict[str, Any]:
    """Append one ``<event>_v1`` line to ``outdir/governance_log.jsonl`` and return it."""
    path = outdir / GOVERNANCE_LOG
    lines = _read_lines(path)
    last = _parse(lines[-1]) if lines else None
    entry: dict[str, Any] = {
        "schema_version": 1,
        "rev": len(lines) + 1,
        "event": event if event.endswith("_v1") else f"{event}_v1",
        "ts_utc": utc_now(),
        "actor": actor,
        "payload": {**dict(payload or {}), "run_id": run_id, "outdir": run_outdir},
        "prev_hash": _link(last) if isinstance(last, dict) else None,
    }
    entry["entry_hash"] = _entry_hash(entry)
    text = "".join(line + "\n" for line in lines) + canonical_json(entry).decode("utf-8") + "\n"
    atomic_write_text(path, text)
    return entry


def _file_digest(path: Path) -> str | None:
    try:
        return prefixed(sha256_hex(path.read_bytes()))
    except FileNotFoundError:
        return None


def seal_results(
    outdir: Path,
    event: str,
    *,
    run_id: str,
    run_outdir: str,
    controls_hash: str | None,
    payload: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Append ``event`` carrying the digests of the results it vouches for (the seal)."""
    artifacts = {name: _file_digest(outdir / name) for name in SEALED_FILES}
    sealed = {
        **dict(payload or {}),
        "artifacts": {k: v for k, v in artifacts.items() if v is not None},
        "gate_controls_hash": controls_hash,
    }
    return append_event(outdir, event, run_id=run_id, run_outdir=run_outdir, payload=sealed)


@attrs.frozen
class GovernanceCheck:
    """The outcome of reading a governance log: presence, validity, last rev, problems, events."""

    present: bool
    valid: bool
    rev: int | None
    problems: list[str]
    events: list[dict[str, Any]]
    legacy: bool = False


def _field(event: Mapping[str, Any], key: str) -> Any:
    """``run_id``/``outdir``: in the payload (reference shape) or at the top level (older shape)."""
    payload = event.get("payload")
    if isinstance(payload, Mapping) and key in payload:
        return payload[key]
    return event.get(key)


def _chain_problems(event: dict[str, Any], index: int, prev: Any, reference: bool) -> list[str]:
    """Schema, rev, link and hash problems of one chained line (either shape)."""
    schema = "governance_entry.v1" if reference else "governance_event.v1"
    problems = list(schema_errors(event, schema, "veriscope_gate"))
    expected_rev = index + 1 if reference else index
    if event.get("rev") != expected_rev:
        problems.append(f"rev {event.get('rev')!r} should be {expected_rev}")
    if event.get("prev_hash") != prev:
        problems.append("prev_hash does not link to the previous event")
    try:
        recomputed = _entry_hash(event) if reference else _legacy_hash(event)
    except (TypeError, ValueError):
        return [*problems, "event cannot be hashed canonically"]
    if _link(event) != recomputed:
        problems.append("hash does not match the event's content")
    return problems


def check_log(
    outdir: Path,
    *,
    run_id: str | None = None,
    run_outdir: str | None = None,
    strict: bool = False,
    allow_legacy: bool = False,
) -> GovernanceCheck:
    """Verify the hash chain and schema of every line; ``run_id``/``run_outdir`` must match when given.

    Both line shapes are read (the reference ``entry_hash`` shape and this package's older
    ``hash`` shape); one log holds one shape. ``allow_legacy`` accepts lines without chain fields
    but still checks their ``run_id``/``outdir``; ``strict`` also rejects unknown event names.
    """
    path = outdir / GOVERNANCE_LOG
    if not path.exists():
        return GovernanceCheck(False, False, None, ["governance_log.jsonl is missing"], [])
    problems: list[str] = []
    events: list[dict[str, Any]] = []
    prev: Any = None
    legacy = False
    reference: bool | None = None
    for number, line in enumerate(_read_lines(path), start=1):
        where = f"governance_log.jsonl line {number}"
        try:
            event = parse_json_strict(line)
        except StrictJSONError as exc:
            problems.append(f"{where}: not JSON ({exc})")
            continue
        if not isinstance(event, dict):
            problems.append(f"{where}: not a JSON object")
            continue
        events.append(event)
        chained = "rev" in event and "prev_hash" in event and ("entry_hash" in event or "hash" in event)
        if not chained and allow_legacy:
            legacy = True
        else:
            shape = "entry_hash" in event or "hash" not in event
            if reference is None:
                reference = shape
            elif shape != reference:
                problems.append(f"{where}: mixes line shapes (entry_hash and hash) in one log")
            found = _chain_problems(event, len(events) - 1, prev, bool(reference))
            problems.extend(f"{where}: {p}" for p in found)
            prev = _link(event)
        if run_id is not None and _field(event, "run_id") != run_id:
            problems.append(f"{where}: run_id {_field(event, 'run_id')!r} does not match {run_id!r}")
        if run_outdir is not None and _field(event, "outdir") != run_outdir:
            problems.append(
                f"{where}: outdir {_field(event, 'outdir')!r} does not match {run_outdir!r}"
            )
        if strict and event.get("event") not in KNOWN_EVENTS:
            problems.append(f"{where}: unknown event {event.get('event')!r}")
    if not events and not problems:
        problems.append("governance_log.jsonl is empty")
    rev = events[-1].get("rev") if events and isinstance(events[-1].get("rev"), int) else None
    return GovernanceCheck(True, not problems, rev, problems, events, legacy)


def _seal_index(events: list[dict[str, Any]], head: Any) -> int | str:
    """Index of the sealing event after ``head``, or a problem."""
    if head is None:
        return 0
    if not isinstance(head, Mapping):
        return "results_summary.json: governance_head must be an object or null"
    for index, event in enumerate(events):
        if event.get("rev") == head.get("rev"):
            if _link(event) != head.get("entry_hash"):
                return "results_summary.json: governance_head does not match the log's line at that rev"
            return index + 1
    return f"results_summary.json: governance_head rev {head.get('rev')!r} is not in the log"


def check_seal(
    outdir: Path, events: list[dict[str, Any]], head: Any, *, optional: frozenset[str] = frozenset()
) -> list[str]:
    """Problems with the seal of the results: it must follow ``head`` and match the files.

    A sealed file named in ``optional`` may be absent (``results.json`` of a partial capsule).
    """
    found = _seal_index(events, head)
    if isinstance(found, str):
        return [found]
    if found >= len(events):
        return ["governance_log.jsonl ends before the event that seals the results (truncated?)"]
    payload = events[found].get("payload")
    artifacts = payload.get("artifacts") if isinstance(payload, Mapping) else None
    if not isinstance(artifacts, Mapping):
        return ["governance_log.jsonl: the event after governance_head does not seal the results"]
    problems = []
    for name in SEALED_FILES:
        actual, sealed = _file_digest(outdir / name), artifacts.get(name)
        if actual != sealed and not (actual is None and name in optional):
            problems.append(
                f"{name} has digest {actual} but governance_log.jsonl sealed {sealed}"
                " (changed after the run?)"
            )
    return problems
