"""Probe sidecars beside the evaluation report (``rmt_probe.json``, ``ve_probe.json``).

An error injection's edit metadata may ask for an explicit cross-model probe: ``detection.probe``
names the sidecar file and ``detection.guards`` the guards meant to flag the fault. After the
guard chain has validated the subject, :func:`run_probe` asks the first named guard that is in
the chain and is a :class:`~invarlock_core.guarding.ProbingGuard` for its probe document. The
guard gets the chain's cached baseline state and its own result for the subject, so the probe
costs almost nothing: it measures on the same calibration windows and never measures twice.

The document is written as canonical JSON (sorted keys, no NaN: the bytes that are hashed) and
atomically into the report's directory; the report records it under ``probe``: the file name,
the guard, the status and the sidecar's ``sha256``. A named guard that is not installed, not in
the chain, cannot probe or crashed on the subject is recorded with the reason, and no sidecar is
written. Probe files are part of the report set (:func:`invarlock_core.evaluation.reporting.is_report_file`):
a new evaluation into the same directory replaces the whole set, so a report never sits beside
another run's probe.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast

import attrs

from invarlock_core.atomic import atomic_write_bytes
from invarlock_core.canonical import canonical_json, prefixed, sha256_hex
from invarlock_core.guarding import (
    GuardChain,
    GuardContext,
    GuardResult,
    ModelUnderTest,
    ProbingGuard,
)
from invarlock_core.report.document import jsonable
from invarlock_core.schema_validation import schema_errors

__all__ = [
    "PROBE_FILE",
    "PROBE_SCHEMA",
    "ChainRun",
    "ProbeRequest",
    "ProbeStatus",
    "requested_probe",
    "run_probe",
]

PROBE_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*_probe\.json$")
"""Allowed sidecar names: one plain file name ending in ``_probe.json`` (never a path)."""
PROBE_SCHEMA = "probe-sidecar"
"""The JSON Schema every probe document is checked against before it is written."""

ProbeStatus = Literal["written", "skipped", "failed"]


@attrs.frozen
class ProbeRequest:
    """What the subject's edit metadata asks for: a sidecar file and the guards that may write it."""

    file: str
    guards: tuple[str, ...]


@attrs.frozen
class ChainRun:
    """What one evaluation's guard chain holds once it has validated the subject."""

    chain: GuardChain
    contexts: Mapping[str, GuardContext]
    baseline: ModelUnderTest
    """The baseline as the chain prepared it (its model may already be released: states are cached)."""
    subject: ModelUnderTest
    results: Mapping[str, GuardResult]
    """Each guard's result for the subject, by registered name."""
    crashed: frozenset[str] = frozenset()
    """Guards that raised on the subject (their result is a synthetic FAIL)."""


def requested_probe(edit_metadata: Mapping[str, Any] | None) -> ProbeRequest | None:
    """The probe that ``detection.probe`` / ``detection.guards`` ask for, or ``None``."""
    detection = (edit_metadata or {}).get("detection")
    if not isinstance(detection, Mapping):
        return None
    file = detection.get("probe")
    if not isinstance(file, str) or not file:
        return None
    guards = detection.get("guards")
    names = tuple(str(g) for g in guards) if isinstance(guards, list | tuple) else ()
    return ProbeRequest(file=file, guards=names)


def _record(
    request: ProbeRequest,
    status: ProbeStatus,
    *,
    guard: str | None = None,
    reason: str | None = None,
    kind: str | None = None,
    sha256: str | None = None,
) -> dict[str, Any]:
    return {
        "file": request.file,
        "guards": list(request.guards),
        "guard": guard,
        "status": status,
        "reason": reason,
        "kind": kind,
        "sha256": sha256,
    }


def _unavailable(name: str, run: ChainRun) -> str | None:
    """Why guard ``name`` cannot probe this subject, or ``None`` when it can."""
    if name not in run.chain.registry:
        return f"guard {name} is not installed"
    if name not in run.chain.order:
        return f"guard {name} is not in the guard chain"
    if not isinstance(run.chain.registry.get(name), ProbingGuard):
        return f"guard {name} cannot probe"
    if name in run.crashed:
        return f"guard {name} crashed on the subject"
    return None


def _one_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}".rstrip(": ")


def run_probe(request: ProbeRequest, run: ChainRun, *, out: Path) -> dict[str, Any]:
    """Write the requested probe sidecar into ``out`` and return the report's ``probe`` record.

    Never raises for a guard's failure: a probe that raises or returns something that is not a
    probe document is recorded as ``failed`` and leaves no file behind.
    """
    if not PROBE_FILE.match(request.file):
        reason = f"probe file name {request.file!r} is not a plain *_probe.json name"
        return _record(request, "skipped", reason=reason)
    reasons = []
    for name in request.guards:
        why = _unavailable(name, run)
        if why is None:
            return _write(request, name, run, out)
        reasons.append(why)
    return _record(request, "skipped", reason="; ".join(reasons) or "no guard is named")


def _write(request: ProbeRequest, name: str, run: ChainRun, out: Path) -> dict[str, Any]:
    guard = cast(ProbingGuard, run.chain.registry.get(name))  # checked by _unavailable
    context = run.contexts.get(name, GuardContext())
    try:
        state = run.chain.baseline_state(name, run.baseline, context)
        document = jsonable(guard.probe(run.subject, state, context, run.results.get(name)))
    except Exception as exc:  # a plugin's bug is recorded, never fatal to the evaluation
        return _record(request, "failed", guard=name, reason=f"probe raised {_one_line(exc)}")
    problems = schema_errors(document, PROBE_SCHEMA)
    if problems:
        reason = f"probe document does not match schema {PROBE_SCHEMA}: {problems[0]}"
        return _record(request, "failed", guard=name, reason=reason)
    data = canonical_json(document)
    atomic_write_bytes(out / request.file, data)
    return _record(
        request,
        "written",
        guard=name,
        kind=str(document["kind"]),
        sha256=prefixed(sha256_hex(data)),
    )
