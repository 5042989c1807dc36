"""Paired evaluation of subject checkpoints against their baseline: the library behind
``invarlock evaluate``.

An evaluation is five phases, each a function of its own module:

1. :func:`~invarlock_core.evaluation.inputs.resolve_inputs`: check the request; resolve the
   profile, preset, policy, window settings, guard plan, dataset provider and device;
2. :func:`~invarlock_core.evaluation.baseline_phase.baseline_phase`: load the dataset and the
   baseline, plan the windows, score them and let the guards measure the baseline, giving a
   reusable :class:`~invarlock_core.evaluation.baseline_phase.BaselineState`;
3. :func:`~invarlock_core.evaluation.subject_phase.subject_phase`: load a subject, score it on the
   same windows, run the guards and write the probe sidecar its edit metadata asks for;
4. :func:`~invarlock_core.evaluation.judging.judge_phase`: pair the scores and judge them;
5. :func:`~invarlock_core.evaluation.reporting.build_report` and
   :func:`~invarlock_core.evaluation.reporting.publish_report`: the typed report, sealed,
   schema-validated and written with its Markdown, timing and runtime-manifest sidecars.

:func:`evaluate` runs them for one subject; :func:`evaluate_many` measures the baseline once and
runs phases 3-5 for each subject into ``out/<subject name>/``. Models are held one at a time.
Expected failures raise :class:`~invarlock_core.errors.InvarlockError` subclasses; a subject that
produces NaN/Inf is a FAIL verdict, never an exception.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from invarlock_core.atomic import SetPublication
from invarlock_core.errors import EXIT_OK, OutputError, UsageError
from invarlock_core.evaluation.baseline_phase import BaselineState, baseline_phase
from invarlock_core.evaluation.inputs import ResolvedInputs, resolve_inputs
from invarlock_core.evaluation.judging import judge_phase
from invarlock_core.evaluation.reporting import build_report, is_report_file, publish_report
from invarlock_core.evaluation.request import EvaluationOutcome, EvaluationRequest
from invarlock_core.evaluation.subject_phase import subject_phase
from invarlock_core.evaluation.subjects import EDIT_METADATA_NAME, subject_checkpoint
from invarlock_core.evaluation.timing import Stopwatch

if TYPE_CHECKING:
    from invarlock_core.plugins import Registries

__all__ = [
    "EDIT_METADATA_NAME",
    "BaselineState",
    "EvaluationOutcome",
    "EvaluationRequest",
    "ManyOutcome",
    "evaluate",
    "evaluate_many",
    "evaluate_subject",
]


@attrs.frozen
class ManyOutcome:
    """One outcome per subject, in the order given; the exit code is the worst of them."""

    outcomes: tuple[EvaluationOutcome, ...]

    @property
    def exit_code(self) -> int:
        return max((o.exit_code for o in self.outcomes), default=EXIT_OK)


def evaluate_subject(
    inputs: ResolvedInputs,
    baseline: BaselineState,
    *,
    out: Path,
    subject: Path | None = None,
    edit: str | None = None,
) -> EvaluationOutcome:
    """Phases 3-5 for one subject (a directory, or made by ``edit``) against ``baseline``."""
    clock = baseline.timings.copy()
    own = Stopwatch()
    request = inputs.request
    with contextlib.ExitStack() as stack:
        with clock.measure("edit_s"):
            checkpoint = stack.enter_context(
                subject_checkpoint(
                    path=subject,
                    edit=edit,
                    baseline=request.baseline,
                    out=out,
                    registries=inputs.registries,
                    seed=request.seed,
                    keep=request.keep_subject,
                )
            )
        if edit is None:
            clock.set("edit_s", value=0.0)
        stage = stack.enter_context(output_set(out))
        measured = subject_phase(inputs, baseline, checkpoint, stage, clock)
        with clock.measure("statistics_s"):
            judged = judge_phase(inputs.policy.to_json(), baseline, measured)
        clock.set("total_s", value=baseline.seconds + own.since_start())
        report = build_report(inputs, baseline, measured, judged, clock)
        return publish_report(inputs, report, stage, final=out)


@contextlib.contextmanager
def output_set(out: Path) -> Iterator[Path]:
    """The staging directory of ``out``'s report set, published as one set when the block ends
    (:class:`~invarlock_core.atomic.SetPublication`); OS errors on the output are exit 2."""
    try:
        publication = SetPublication(out, members=is_report_file)
    except OSError as exc:
        raise _output_error(out, exc) from None
    try:
        yield publication.stage
    except BaseException:
        publication.discard()
        raise
    try:
        publication.publish()
    except OSError as exc:
        publication.discard()
        raise _output_error(out, exc) from None


def _output_error(out: Path, exc: OSError) -> OutputError:
    return OutputError(f"cannot write the report to --out {out}: {exc.strerror or exc}")


def evaluate(request: EvaluationRequest, *, registries: Registries | None = None) -> EvaluationOutcome:
    """Run the paired evaluation and write the report into ``request.out``."""
    inputs = resolve_inputs(request, registries)
    baseline = baseline_phase(inputs)
    return evaluate_subject(inputs, baseline, out=request.out, subject=request.subject, edit=request.edit)


def subject_names(subjects: Sequence[Path]) -> list[str]:
    """The output folder of each subject: its directory name, which must be unique."""
    names = [Path(s).resolve().name for s in subjects]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise UsageError(f"two subjects are named {name!r}: each writes its report to --out/{name}/")
        seen.add(name)
    return names


def evaluate_many(
    request: EvaluationRequest, subjects: Sequence[str | Path], *, registries: Registries | None = None
) -> ManyOutcome:
    """Evaluate every subject against one baseline, measured once; reports go to
    ``request.out/<subject directory name>/``."""
    paths = [Path(s) for s in subjects]
    if not paths:
        raise UsageError("give at least one --subject DIR")
    if request.edit is not None or request.subject is not None:
        raise UsageError("many-subject evaluation takes its subjects as a list, not --edit or a single subject")
    names = subject_names(paths)
    inputs = resolve_inputs(request, registries, subjects=paths)
    baseline = baseline_phase(inputs)
    return ManyOutcome(
        tuple(
            evaluate_subject(inputs, baseline, out=request.out / name, subject=path)
            for name, path in zip(names, paths)
        )
    )
