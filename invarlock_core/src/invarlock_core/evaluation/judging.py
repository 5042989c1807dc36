"""The judge phase: pair the baseline's and the subject's window scores and judge them under the
policy, with the guards' outcomes and the subject's non-finite tensors."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from invarlock_core.evaluation.baseline_phase import BaselineState
from invarlock_core.evaluation.subject_phase import MAX_TENSORS_NAMED, SubjectMeasurements
from invarlock_core.evaluation.verdict import Judgement, WindowScore, judge
from invarlock_core.evaluation.windows import Window
from invarlock_core.report.document import guard_outcomes, guard_result_json
from invarlock_core.report.sections import GuardRecord
from invarlock_core.serialization import structure

__all__ = ["Judged", "judge_phase"]


@attrs.frozen
class Judged:
    """The paired window scores, the recorded guard results and the judgement."""

    final: tuple[WindowScore, ...]
    preview: tuple[WindowScore, ...]
    guards: tuple[GuardRecord, ...]
    judgement: Judgement
    nonfinite_named: tuple[str, ...]
    nonfinite_count: int


def _scores(
    windows: Sequence[Window], baseline: npt.NDArray[np.float64], subject: npt.NDArray[np.float64], tokens: int
) -> tuple[WindowScore, ...]:
    return tuple(
        WindowScore(
            id=w.id,
            tokens=tokens,
            baseline_nll=float(b),
            subject_nll=float(s) if math.isfinite(float(s)) else None,
        )
        for w, b, s in zip(windows, baseline, subject)
    )


def judge_phase(policy: dict[str, Any], baseline: BaselineState, measured: SubjectMeasurements) -> Judged:
    """Judge ``measured`` against ``baseline`` under the report's ``policy`` section."""
    scored = baseline.plan.seq_len - 1
    final = _scores(baseline.plan.final, baseline.final_nll, measured.final_nll, scored)
    preview = _scores(baseline.plan.preview, baseline.preview_nll, measured.preview_nll, scored)
    guards_json = [guard_result_json(r) for r in measured.guards.results]
    named = tuple(list(measured.nonfinite)[:MAX_TENSORS_NAMED])
    judgement = judge(
        final=final,
        preview=preview,
        policy=policy,
        guards=guard_outcomes(guards_json),
        nonfinite_tensors=named,
        nonfinite_tensor_count=len(measured.nonfinite),
    )
    return Judged(
        final=final,
        preview=preview,
        guards=tuple(structure(g, GuardRecord) for g in guards_json),
        judgement=judgement,
        nonfinite_named=named,
        nonfinite_count=len(measured.nonfinite),
    )
