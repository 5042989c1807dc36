"""The evaluation report as typed records: one frozen attrs class per section.

:class:`EvaluationReport` is what ``evaluate`` builds; :func:`report_json` turns it into the JSON
object that is sealed and written, with the product converter
(:data:`invarlock_core.serialization.converter`), and :func:`parse_report` reads a report object
back. The JSON form is the published ``invarlock/evaluation-report-v1`` schema, key for key: a
report written before these classes existed reads back and re-serialises to the same bytes.

Sections whose content belongs to a plugin or to a step with its own format stay mappings:
guard metrics and details, the edit metadata, the policy (:meth:`Policy.to_json`), the probe
record, the validation flags, the timings and the window plan's description.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from invarlock_core.evaluation.verdict import WindowScore
from invarlock_core.report.document import jsonable
from invarlock_core.serialization import converter, structure

__all__ = [
    "BootstrapRecord",
    "CheckpointRecord",
    "DatasetRecord",
    "Digests",
    "EnvironmentRecord",
    "EvaluationReport",
    "GuardChainRecord",
    "GuardRecord",
    "PerWindow",
    "PresetRecord",
    "PrimaryMetric",
    "SubjectRecord",
    "TokenizerRecord",
    "parse_report",
    "report_json",
]

REPORT_SCHEMA = "invarlock/evaluation-report-v1"


@attrs.frozen
class BootstrapRecord:
    """How the confidence interval was computed (BCa bootstrap over final windows)."""

    method: str
    replicates: int
    alpha: float
    seed: int
    z0: float | None
    acceleration: float | None


@attrs.frozen
class PerWindow:
    """Token counts and NLLs of every scored window: what a verifier recomputes the metric from."""

    final: tuple[WindowScore, ...]
    preview: tuple[WindowScore, ...]


@attrs.frozen
class PrimaryMetric:
    """The paired perplexity ratio and its interval; numbers are ``None`` when the subject's
    losses are not finite."""

    name: str
    definition: str
    windows: Mapping[str, int]
    tokens: Mapping[str, int]
    ratio: float | None
    ci: tuple[float, float] | None
    delta_logloss: float | None
    baseline_ppl: float | None
    subject_ppl: float | None
    preview_ratio: float | None
    drift: float | None
    delta_q95: float | None
    bootstrap: BootstrapRecord | None
    per_window: PerWindow


@attrs.frozen
class GuardRecord:
    """One guard's result as recorded (``metrics``/``thresholds``/``details`` are the guard's own)."""

    name: str
    passed: bool
    severity: str
    metrics: Mapping[str, Any]
    violations: tuple[Mapping[str, Any], ...]
    thresholds: Mapping[str, Any]
    details: Mapping[str, Any]
    seconds: float


@attrs.frozen
class GuardChainRecord:
    """Which guards ran, which were installed, which defaults were missing."""

    order: tuple[str, ...]
    installed: tuple[str, ...]
    skipped: tuple[str, ...]
    note: str | None
    baseline_prepare_calls: int


@attrs.frozen
class CheckpointRecord:
    """A checkpoint directory and the sha256 of every file in it."""

    path: str
    digest: str
    files: Mapping[str, str]
    dtype: str
    revision: str | None
    model_type: str | None


@attrs.frozen
class SubjectRecord(CheckpointRecord):
    """The subject checkpoint, how it was made and whether its weights are finite."""

    label: str
    edit: Mapping[str, Any] | None
    edit_spec: str | None
    nonfinite_tensors: tuple[str, ...]
    nonfinite_tensor_count: int


@attrs.frozen
class TokenizerRecord:
    fingerprint: str


@attrs.frozen
class DatasetRecord:
    """Where the evaluation texts came from and their digest."""

    provider: str
    source: str
    license: str | None
    revision: str | None
    texts: int
    digest: str
    split: str | None


@attrs.frozen
class PresetRecord:
    path: str
    digest: str
    provenance: Mapping[str, Any]


@attrs.frozen
class EnvironmentRecord:
    """The software and machine the evaluation ran on."""

    python: str
    platform: str
    machine: str
    invarlock_core: str | None
    numpy: str
    torch: str | None
    transformers: str | None
    device: str
    dtype: str
    cpu_threads: int | None
    cuda: str | None


@attrs.frozen
class Digests:
    """The seal: see :mod:`invarlock_core.report.document`."""

    policy: str
    windows: str
    per_window: str
    report: str


@attrs.frozen
class EvaluationReport:
    """``evaluation.report.json``, section by section."""

    created_at: str
    verdict: str
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    primary_metric: PrimaryMetric
    guards: tuple[GuardRecord, ...]
    guard_chain: GuardChainRecord
    validation: Mapping[str, bool]
    baseline: CheckpointRecord
    subject: SubjectRecord
    tokenizer: TokenizerRecord
    dataset: DatasetRecord
    windows: Mapping[str, Any]
    policy: Mapping[str, Any]
    preset: PresetRecord | None
    probe: Mapping[str, Any] | None
    timings: Mapping[str, Any]
    environment: EnvironmentRecord
    digests: Digests | None = None
    sidecars: Mapping[str, str] | None = None
    """Digests of the timing file and the runtime manifest (reports written since they are bound)."""
    schema_version: int = 1
    schema: str = REPORT_SCHEMA


def report_json(report: EvaluationReport) -> dict[str, Any]:
    """The JSON object of ``report`` (no ``digests``/``sidecars`` keys while they are unset)."""
    # jsonable: fixed-length tuples (the CI) unstructure as tuples; JSON and the schema want lists.
    data: dict[str, Any] = jsonable(converter.unstructure(report))
    for optional in ("digests", "sidecars"):
        if data[optional] is None:
            del data[optional]
    return data


def parse_report(data: Mapping[str, Any]) -> EvaluationReport:
    """A report object (already schema-checked) as an :class:`EvaluationReport`."""
    return structure(dict(data), EvaluationReport)
