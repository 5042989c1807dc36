"""Reusing the baseline numbers of an earlier report (``--baseline-report``), once it is proven
to belong to this baseline.

A report is trusted for its baseline NLLs only when

1. it is intact: schema, window pairing and every digest of its seal recompute
   (:func:`invarlock_core.report.verification.verify_report`), so its numbers are the ones it was
   sealed with;
2. it names this baseline: its ``baseline.digest`` is this checkpoint's digest;
3. it used these windows: its window-plan digest is this plan's (dataset, lengths, counts, seed);
4. its numbers are this baseline's: the first final window is scored again and must match the
   recorded NLL within :data:`SPOT_TOLERANCE` (a sealed report can still carry numbers made up
   before sealing; one forward pass catches that).

Anything else is refused with :class:`~invarlock_core.errors.InputError` (exit 2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from invarlock_core.errors import InputError
from invarlock_core.evaluation.windows import WindowPlan
from invarlock_core.guarding import ModelUnderTest
from invarlock_core.report.document import load_report, window_scores

if TYPE_CHECKING:
    from invarlock_core.evaluation.inputs import ResolvedInputs

__all__ = ["SPOT_TOLERANCE", "reused_baseline"]

SPOT_TOLERANCE = 1e-3
"""Absolute NLL tolerance (nats) of the spot check, scaled up for large losses: the same
checkpoint on the same device and dtype scores a window identically up to batch-order rounding."""

_INTEGRITY_CHECKS = ("schema", "pairing", "digests")


def _refuse(inputs: ResolvedInputs, why: str) -> InputError:
    return InputError(f"--baseline-report {inputs.request.baseline_report} {why}")


def _spot_check(inputs: ResolvedInputs, mut: ModelUnderTest, plan: WindowPlan, recorded: float) -> None:
    from invarlock_core.evaluation.scoring import score_windows

    ids = plan.final_ids[:1] if plan.final_ids.shape[0] else plan.preview_ids[:1]
    measured = float(score_windows(mut.model, ids, device=inputs.device, batch=1)[0])
    if not abs(measured - recorded) <= SPOT_TOLERANCE * max(1.0, abs(recorded)):
        raise _refuse(
            inputs,
            f"records baseline NLL {recorded:.6f} for its first window, but this baseline scores "
            f"{measured:.6f}: the numbers are not this baseline's (or device/dtype differ)",
        )


def reused_baseline(
    inputs: ResolvedInputs, mut: ModelUnderTest, plan: WindowPlan
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
    """The earlier report's baseline (preview, final) NLLs, or ``None`` when none was given."""
    from invarlock_core.report.verification import verify_report

    source = inputs.request.baseline_report
    if source is None:
        return None
    earlier = load_report(source)
    checked = verify_report(earlier, path=source)
    broken = [c.detail or c.name for c in checked.checks if c.name in _INTEGRITY_CHECKS and not c.ok]
    if broken:
        raise _refuse(inputs, f"is not an intact report: {'; '.join(broken)}")
    if earlier["baseline"]["digest"] != mut.digest:
        raise _refuse(inputs, "was made for a different baseline checkpoint")
    if earlier["windows"]["digest"] != plan.digest:
        raise _refuse(
            inputs,
            "used different evaluation windows (dataset, --seq-len, --stride, window counts and --seed must match)",
        )
    recorded = earlier["primary_metric"]["per_window"]
    final = np.array([w.baseline_nll for w in window_scores(recorded["final"])], dtype=np.float64)
    preview = np.array([w.baseline_nll for w in window_scores(recorded["preview"])], dtype=np.float64)
    _spot_check(inputs, mut, plan, float(final[0] if final.size else preview[0]))
    return preview, final
