"""The subject phase: load one subject, score it on the baseline's windows, run the guards
against the baseline's cached states and write the probe sidecar its edit metadata asks for."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import numpy.typing as npt

from invarlock_core.evaluation.baseline_phase import BaselineState
from invarlock_core.evaluation.finiteness import nonfinite_counts
from invarlock_core.evaluation.guard_plan import GuardRun
from invarlock_core.evaluation.loading import checkpoint_record, load_checkpoint, under_test
from invarlock_core.evaluation.passes import score_plan
from invarlock_core.evaluation.probe_sidecars import ChainRun, requested_probe, run_probe
from invarlock_core.evaluation.subjects import Subject
from invarlock_core.evaluation.timing import Stopwatch
from invarlock_core.evaluation.unchanged_tensors import unchanged_parameters
from invarlock_core.guarding import ModelUnderTest
from invarlock_core.report.sections import CheckpointRecord

if TYPE_CHECKING:
    from invarlock_core.evaluation.inputs import ResolvedInputs

__all__ = ["MAX_TENSORS_NAMED", "SubjectMeasurements", "subject_phase"]

MAX_TENSORS_NAMED = 10


@attrs.frozen(eq=False)
class SubjectMeasurements:
    """What the subject phase measured: the judge and the report need nothing else from it."""

    subject: Subject
    checkpoint: CheckpointRecord
    tokenizer_digest: str
    nonfinite: dict[str, int]
    preview_nll: npt.NDArray[np.float64]
    final_nll: npt.NDArray[np.float64]
    guards: GuardRun
    probe: dict[str, Any] | None


def _probe(
    inputs: ResolvedInputs, out: Path, subject: Subject, baseline: BaselineState, mut: ModelUnderTest, run: GuardRun
) -> dict[str, Any] | None:
    """The probe sidecar the edit metadata asks for, written into ``out``: the report's record."""
    wanted = requested_probe(subject.metadata)
    if wanted is None:
        return None
    plan = inputs.guards
    chain_run = ChainRun(
        chain=plan.chain,
        contexts=plan.contexts,
        baseline=baseline.under_test,
        subject=mut,
        results=dict(zip(plan.chain.order, run.results)),
        crashed=run.crashed,
    )
    return run_probe(wanted, chain_run, out=out)


def _unchanged(inputs: ResolvedInputs, baseline: BaselineState, mut: ModelUnderTest, files: dict[str, str]) -> None:
    if inputs.guards.chain.order:  # only guards use it: its time is guard time
        mut.unchanged = unchanged_parameters(
            mut.model, baseline.under_test.checkpoint, mut.checkpoint, file_digests=(baseline.checkpoint.files, files)
        )


def subject_phase(
    inputs: ResolvedInputs, baseline: BaselineState, subject: Subject, out: Path, clock: Stopwatch
) -> SubjectMeasurements:
    """Measure ``subject`` against ``baseline``; the probe sidecar (if any) goes into ``out``."""
    from invarlock_core.models import check_tokenizers_match

    with clock.measure("subject", "load_s"):
        loaded = load_checkpoint(inputs, subject.path)
    tokenizer_digest = check_tokenizers_match(baseline.tokenizer, loaded.tokenizer)
    mut = under_test("subject", loaded, baseline.calibration)
    nonfinite = nonfinite_counts([*loaded.model.named_parameters(), *loaded.model.named_buffers()])
    mut.nonfinite = nonfinite
    with clock.measure("subject", "eval_s") as scoring:
        preview, final, observed = score_plan(mut, baseline.plan, inputs.device, inputs.settings.batch, inputs.guards)
        scoring.move(observed)
    with clock.measure("subject", "guards_validate_s") as guarding:
        _unchanged(inputs, baseline, mut, loaded.files)
        run = inputs.guards.validate(baseline.under_test, mut)
        guarding.shift += observed
    with clock.measure("probe_s"):
        probe = _probe(inputs, out, subject, baseline, mut, run)
    return SubjectMeasurements(
        subject=subject,
        checkpoint=checkpoint_record(loaded),
        tokenizer_digest=tokenizer_digest,
        nonfinite=nonfinite,
        preview_nll=preview,
        final_nll=final,
        guards=run,
        probe=probe,
    )
