"""Typed artifact models (frozen attrs, unstructured by Veriscope's cattrs converter).

Each model has a JSON Schema in ``veriscope_gate/schemas/<name>.v1.schema.json``; extra keys
are allowed, only ``schema_version = 1`` is accepted. See docs/reference/veriscope-contracts.md.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import attrs

from veriscope_gate.records import Decision, GateRecord

__all__ = [
    "SCHEMA_VERSION",
    "ManualJudgement",
    "MetricRecord",
    "Profile",
    "Results",
    "RunConfig",
    "RunRecord",
    "RunStatus",
    "Summary",
    "Timing",
    "WindowSignatureRef",
    "finite_or_none",
]

SCHEMA_VERSION = 1
RunStatus = Literal["success", "user_code_failure", "veriscope_failure"]


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN: non-finite floats become ``null``."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


@attrs.frozen
class WindowSignatureRef:
    hash: str
    path: str = "window_signature.json"


@attrs.frozen
class Profile:
    gate_preset: str
    overrides: dict[str, Any] | None = None


@attrs.frozen
class Timing:
    """Wall-clock accounting: ``overhead = gate_wall_s / runner_wall_s``."""

    gate_wall_s: float
    runner_wall_s: float | None
    probes: int
    checks: int


@attrs.frozen
class MetricRecord:
    """One probe's metric values (``null`` for non-finite) and the training loss."""

    iter: int
    values: dict[str, float | None]
    loss: float | None = None


@attrs.frozen
class RunRecord:
    """The run fields that ``results.json`` and ``results_summary.json`` share."""

    run_id: str
    window_signature_ref: WindowSignatureRef
    profile: Profile
    run_status: RunStatus
    runner_exit_code: int | None
    runner_signal: str | None
    started_ts_utc: str
    ended_ts_utc: str | None


@attrs.frozen
class Results(RunRecord):
    """``results.json``: the detailed audit record."""

    gates: list[GateRecord]
    metrics: list[MetricRecord]
    partial: bool = False
    timing: Timing | None = None
    gate_controls_hash: str | None = None
    pathology: dict[str, Any] | None = None
    schema_version: int = SCHEMA_VERSION


@attrs.frozen
class Summary(RunRecord):
    """``results_summary.json``: the compiled summary pipelines read."""

    counts: dict[str, int]
    final_decision: Decision
    first_fail_iter: int | None
    partial: bool = False
    wrapper_exit_code: int | None = None
    timing: Timing | None = None
    gate_controls_hash: str | None = None
    governance_head: dict[str, Any] | None = None
    """``{"rev", "entry_hash"}`` of the governance log's last line when this summary was written;
    the next line seals the results (see :mod:`veriscope_gate.governance`)."""
    schema_version: int = SCHEMA_VERSION


@attrs.frozen
class ManualJudgement:
    """``manual_judgement.json``: an operator overlay; raw gate records are never changed."""

    run_id: str
    status: Literal["pass", "fail"]
    reason: str
    reviewer: str | None
    ts_utc: str
    schema_version: int = SCHEMA_VERSION


@attrs.frozen
class RunConfig:
    """``run_config_resolved.json``: provenance with allowlisted, redacted environment capture."""

    ts_utc: str
    package: dict[str, str]
    git_sha: str | None
    run: dict[str, str]
    argv: dict[str, list[str]]
    env: dict[str, str]
    env_capture: dict[str, Any]
    determinism_status: dict[str, Any]
    dependencies: dict[str, Any]
    gate_preset: str
    notes: list[str] = attrs.field(factory=list)
    schema_version: int = SCHEMA_VERSION
