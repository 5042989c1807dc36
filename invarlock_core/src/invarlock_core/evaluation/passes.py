"""Scoring one model over the window plan, with the guard chain's forward observers attached."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from invarlock_core.evaluation.guard_plan import GuardPlan
from invarlock_core.evaluation.windows import WindowPlan
from invarlock_core.guarding import ModelUnderTest

__all__ = ["PlanScores", "score_plan"]

PlanScores = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float]
"""Preview NLLs, final NLLs, and the seconds the guards' observers spent inside the passes."""


def score_plan(mut: ModelUnderTest, plan: WindowPlan, device: str, batch: int, guards: GuardPlan) -> PlanScores:
    """Preview and final window NLLs of ``mut``, and the observers' seconds (guard time, not
    scoring time)."""
    from invarlock_core.evaluation.scoring import score_windows

    observers = guards.chain.observers(mut, guards.contexts)
    try:
        preview = score_windows(
            mut.model, plan.preview_ids, device=device, batch=batch, label=f"{mut.role} preview", observers=observers
        )
        final = score_windows(
            mut.model, plan.final_ids, device=device, batch=batch, label=f"{mut.role} final", observers=observers
        )
    finally:
        for observer in observers:
            observer.finish()
    return preview, final, sum(observer.seconds for observer in observers)
