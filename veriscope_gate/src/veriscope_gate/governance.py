"""``governance_log.jsonl``: an append-only, hash-chained log of run and operator events.

Each line is one event ``{schema_version, rev, event, ts_utc, run_id, outdir, payload,
prev_hash, hash}``; ``hash`` is ``sha256:`` of the canonical JSON of the event without ``hash``
and ``prev_hash`` is the previous line's ``hash`` (``null`` for ``rev`` 0). Appends rewrite the
file atomically, so a reader never sees half a line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from invarlock_core.atomic import atomic_write_text
from invarlock_core.canonical import canonical_digest, canonical_json, prefixed
from invarlock_core.schema_validation import schema_errors
from veriscope_gate.timeutil import utc_now

__all__ = ["GOVERNANCE_LOG", "KNOWN_EVENTS", "GovernanceCheck", "append_event", "check_log"]

GOVERNANCE_LOG = "governance_log.jsonl"
KNOWN_EVENTS = frozenset(
    {"run_started", "run_finished", "session_opened", "session_closed", "manual_override"}
)


def _event_hash(event: Mapping[str, Any]) -> str:
    body = {k: v for k, v in event.items() if k != "hash"}
    return prefixed(canonical_digest(body))


def _read_lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def append_event(
    outdir: Path, event: str, *, run_id: str, run_outdir: str, payload: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Append one event to ``outdir/governance_log.jsonl`` and return it."""
    path = outdir / GOVERNANCE_LOG
    lines = _read_lines(path)
    prev_hash: str | None = None
    if lines:
        try:
            prev_hash = json.loads(lines[-1]).get("hash")
        except json.JSONDecodeError:
            prev_hash = None
    entry: dict[str, Any] = {
        "schema_version": 1,
        "rev": len(lines),
        "event": event,
        "ts_utc": utc_now(),
        "run_id": run_id,
        "outdir": run_outdir,
        "payload": dict(payload or {}),
        "prev_hash": prev_hash,
    }
    entry["hash"] = _event_hash(entry)
    text = "".join(line + "\n" for line in lines) + canonical_json(entry).decode("utf-8") + "\n"
    atomic_write_text(path, text)
    return entry


@attrs.frozen
class GovernanceCheck:
    """The outcome of reading a governance log: presence, validity, last rev, problems, events."""

    present: bool
    valid: bool
    rev: int | None
    problems: list[str]
    events: list[dict[str, Any]]
    legacy: bool = False


def check_log(
    outdir: Path,
    *,
    run_id: str | None = None,
    run_outdir: str | None = None,
    strict: bool = False,
    allow_legacy: bool = False,
) -> GovernanceCheck:
    """Verify the hash chain and schema of every line; ``run_id``/``run_outdir`` must match when given.

    ``allow_legacy`` accepts lines without chain fields (``rev``/``prev_hash``/``hash``) but still
    checks their ``run_id``/``outdir``; ``strict`` also rejects unknown event names.
    """
    path = outdir / GOVERNANCE_LOG
    if not path.exists():
        return GovernanceCheck(False, False, None, ["governance_log.jsonl is missing"], [])
    problems: list[str] = []
    events: list[dict[str, Any]] = []
    prev: str | None = None
    legacy = False
    for number, line in enumerate(_read_lines(path), start=1):
        where = f"governance_log.jsonl line {number}"
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: not JSON ({exc.msg})")
            continue
        if not isinstance(event, dict):
            problems.append(f"{where}: not a JSON object")
            continue
        events.append(event)
        chained = all(k in event for k in ("rev", "prev_hash", "hash"))
        if not chained and allow_legacy:
            legacy = True
        else:
            problems.extend(f"{where}: {p}" for p in schema_errors(event, "governance_event.v1", "veriscope_gate"))
            if event.get("rev") != number - 1:
                problems.append(f"{where}: rev {event.get('rev')!r} should be {number - 1}")
            if event.get("prev_hash") != prev:
                problems.append(f"{where}: prev_hash does not link to the previous event")
            if isinstance(event.get("hash"), str):
                try:
                    if event["hash"] != _event_hash(event):
                        problems.append(f"{where}: hash does not match the event's content")
                except (TypeError, ValueError):
                    problems.append(f"{where}: event cannot be hashed canonically")
            prev = event.get("hash") if isinstance(event.get("hash"), str) else None
        if run_id is not None and event.get("run_id") != run_id:
            problems.append(f"{where}: run_id {event.get('run_id')!r} does not match {run_id!r}")
        if run_outdir is not None and event.get("outdir") != run_outdir:
            problems.append(f"{where}: outdir {event.get('outdir')!r} does not match {run_outdir!r}")
        if strict and event.get("event") not in KNOWN_EVENTS:
            problems.append(f"{where}: unknown event {event.get('event')!r}")
    if not events and not problems:
        problems.append("governance_log.jsonl is empty")
    rev = events[-1].get("rev") if events and isinstance(events[-1].get("rev"), int) else None
    return GovernanceCheck(True, not problems, rev, problems, events, legacy)
