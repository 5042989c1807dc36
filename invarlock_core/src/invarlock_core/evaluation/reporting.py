"""The report phase: assemble the typed report from the phases' results and write it."""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from invarlock_core.errors import EXIT_FAIL, EXIT_OK
from invarlock_core.evaluation.baseline_phase import BaselineState
from invarlock_core.evaluation.inputs import ResolvedInputs
from invarlock_core.evaluation.judging import Judged
from invarlock_core.evaluation.probe_sidecars import PROBE_FILE
from invarlock_core.evaluation.request import EvaluationOutcome
from invarlock_core.evaluation.subject_phase import SubjectMeasurements
from invarlock_core.evaluation.timing import Stopwatch
from invarlock_core.report.document import (
    MARKDOWN_FILENAME,
    REPORT_FILENAME,
    REPORT_SET,
    write_report,
)
from invarlock_core.report.sections import (
    BootstrapRecord,
    Digests,
    EnvironmentRecord,
    EvaluationReport,
    PerWindow,
    PresetRecord,
    PrimaryMetric,
    SubjectRecord,
    TokenizerRecord,
    report_json,
)
from invarlock_core.serialization import structure

__all__ = ["build_report", "is_report_file", "publish_report"]

_LABEL_KEYS = ("edit_spec", "edit_type", "edit", "name")


def _environment(device: str, dtype: str) -> EnvironmentRecord:
    import importlib.metadata

    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    torch = sys.modules.get("torch")
    return EnvironmentRecord(
        python=platform.python_version(),
        platform=platform.platform(),
        machine=platform.machine(),
        invarlock_core=version("invarlock-core"),
        numpy=np.__version__,
        torch=getattr(torch, "__version__", None),
        transformers=version("transformers"),
        device=device,
        dtype=dtype,
        cpu_threads=int(torch.get_num_threads()) if torch is not None else None,
        cuda=getattr(getattr(torch, "version", None), "cuda", None),
    )


def _label(metadata: dict[str, Any] | None) -> str:
    if metadata is None:
        return "custom"
    return str(next((metadata[k] for k in _LABEL_KEYS if metadata.get(k)), "custom"))


def _primary_metric(judged: Judged) -> PrimaryMetric:
    pm = dict(judged.judgement.primary_metric)
    bootstrap = pm.pop("bootstrap")
    return PrimaryMetric(
        **pm,
        bootstrap=None if bootstrap is None else structure(bootstrap, BootstrapRecord),
        per_window=PerWindow(final=judged.final, preview=judged.preview),
    )


def _subject(measured: SubjectMeasurements, judged: Judged) -> SubjectRecord:
    return SubjectRecord(
        **{field: getattr(measured.checkpoint, field) for field in ("path", "digest", "files", "dtype", "revision", "model_type")},
        label=_label(measured.subject.metadata),
        edit=measured.subject.metadata,
        edit_spec=measured.subject.edit,
        nonfinite_tensors=judged.nonfinite_named,
        nonfinite_tensor_count=judged.nonfinite_count,
    )


def build_report(
    inputs: ResolvedInputs,
    baseline: BaselineState,
    measured: SubjectMeasurements,
    judged: Judged,
    clock: Stopwatch,
) -> EvaluationReport:
    """The typed report of one subject (``timings`` as measured so far)."""
    preset = inputs.preset
    judgement = judged.judgement
    return EvaluationReport(
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        verdict=judgement.verdict,
        reasons=judgement.reasons,
        warnings=judgement.warnings,
        primary_metric=_primary_metric(judged),
        guards=judged.guards,
        guard_chain=inputs.guards.describe(),
        validation=judgement.validation,
        baseline=baseline.checkpoint,
        subject=_subject(measured, judged),
        tokenizer=TokenizerRecord(fingerprint=measured.tokenizer_digest),
        dataset=baseline.dataset,
        windows={**baseline.plan.describe(), "digest": baseline.plan.digest, "batch": inputs.settings.batch},
        policy=inputs.policy.to_json(),
        preset=(
            PresetRecord(path=preset.path, digest=preset.digest, provenance=dict(preset.provenance))
            if preset is not None
            else None
        ),
        probe=measured.probe,
        timings=clock.values,
        environment=_environment(inputs.device, measured.checkpoint.dtype),
    )


def is_report_file(name: str) -> bool:
    """Whether ``name`` belongs to the report set of a report directory."""
    return name in REPORT_SET or PROBE_FILE.match(name) is not None


def publish_report(
    inputs: ResolvedInputs, report: EvaluationReport, stage: Path, *, final: Path
) -> EvaluationOutcome:
    """Write ``report`` and its sidecars into ``stage`` (published at ``final`` by the caller);
    the outcome names the final paths and carries the exit code."""
    document = report_json(report)
    write_report(document, stage)
    if inputs.request.assurance == "off":
        code = EXIT_OK
    else:
        code = EXIT_OK if report.verdict == "PASS" else EXIT_FAIL
    sealed = attrs.evolve(
        report, digests=structure(document["digests"], Digests), sidecars=dict(document["sidecars"])
    )
    return EvaluationOutcome(
        report=document,
        report_path=final / REPORT_FILENAME,
        markdown_path=final / MARKDOWN_FILENAME,
        exit_code=code,
        sections=sealed,
    )
