"""The verdict: one pure function from recorded numbers and policy to PASS/FAIL and reasons.

``invarlock evaluate`` and ``invarlock verify`` both call :func:`judge`, so a report's verdict can
always be recomputed from what the report records: per-window token counts and NLLs, the policy,
the guard outcomes and the subject's non-finite tensors. No torch needed.

FAIL reasons, in order: non-finite subject weights, non-finite subject losses, the ratio above the
acceptance range, the CI upper bound above it, the ratio below it, final/preview drift outside the
band, and each failed guard with its first violations. A tail warning (q95 of per-window Δ above
``tail_q95_warn``) never fails a run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs

from invarlock_core.evaluation.paired_metric import safe_exp, summarize_pair, weighted_mean

__all__ = [
    "GUARD_FLAGS",
    "GuardOutcome",
    "Judgement",
    "WindowScore",
    "guard_flag",
    "judge",
]

Verdict = Literal["PASS", "FAIL"]

GUARD_FLAGS = {
    "invariants": "invariants_ok",
    "spectral": "spectral_stable",
    "rmt": "rmt_stable",
    "variance": "variance_ok",
}
_MAX_NAMED = 3


def guard_flag(name: str) -> str:
    """The ``validation`` flag of guard ``name`` (``invariants_ok``, ``spectral_stable``, ...)."""
    return GUARD_FLAGS.get(name, f"{name}_ok")


@attrs.frozen
class WindowScore:
    """One window's scored token count and mean NLLs (``None``: the subject's was not finite)."""

    id: str
    tokens: int
    baseline_nll: float
    subject_nll: float | None


@attrs.frozen
class GuardOutcome:
    """What the verdict needs from one guard result."""

    name: str
    passed: bool
    violations: tuple[str, ...] = ()


@attrs.frozen
class Judgement:
    """The verdict, why, and the numbers behind it."""

    verdict: Verdict
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    validation: dict[str, bool]
    primary_metric: dict[str, Any]


def _names(items: Sequence[str], total: int) -> str:
    shown = ", ".join(items[:_MAX_NAMED])
    return shown + (f" and {total - _MAX_NAMED} more" if total > _MAX_NAMED else "")


def _fmt(value: float) -> str:
    return f"{value:.4f}" if value < 1e6 else f"{value:.3e}"


def _nonfinite(windows: Sequence[WindowScore]) -> list[str]:
    return [
        w.id for w in windows if w.subject_nll is None or not math.isfinite(w.subject_nll)
    ]


def _ratio(windows: Sequence[WindowScore]) -> float:
    deltas = [float(w.subject_nll) - w.baseline_nll for w in windows if w.subject_nll is not None]
    return safe_exp(weighted_mean(deltas, [w.tokens for w in windows]))


def judge(
    *,
    final: Sequence[WindowScore],
    preview: Sequence[WindowScore],
    policy: Mapping[str, Any],
    guards: Sequence[GuardOutcome] = (),
    nonfinite_tensors: Sequence[str] = (),
    nonfinite_tensor_count: int | None = None,
) -> Judgement:
    """Recompute the primary metric and the verdict from recorded numbers and ``policy``.

    ``policy`` is the report's ``policy`` section (:meth:`invarlock_core.evaluation.policy.Policy.to_json`).
    """
    reasons: list[str] = []
    warnings: list[str] = []
    lo, hi = (float(v) for v in policy["acceptance_range"])
    tol = float(policy["tolerance"])
    drift_lo, drift_hi = (float(v) for v in policy["drift_band"])
    boot = policy["bootstrap"]
    validation: dict[str, bool] = {}

    bad_tensors = nonfinite_tensor_count if nonfinite_tensor_count is not None else len(nonfinite_tensors)
    validation["weights_finite"] = bad_tensors == 0
    if bad_tensors:
        reasons.append(
            f"subject has non-finite (NaN/Inf) weights in {bad_tensors} tensor(s): "
            f"{_names(list(nonfinite_tensors), bad_tensors)}"
        )

    bad_windows = _nonfinite(final) + _nonfinite(preview)
    pm: dict[str, Any] = {
        "name": "ppl_ratio",
        "definition": "exp(token-weighted mean of subject NLL - baseline NLL) over final windows",
        "windows": {"final": len(final), "preview": len(preview)},
        "tokens": {
            "final": sum(w.tokens for w in final),
            "preview": sum(w.tokens for w in preview),
        },
    }
    validation["primary_metric_finite"] = not bad_windows
    if bad_windows:
        total = len(final) + len(preview)
        reasons.append(
            f"subject produced non-finite (NaN/Inf) loss on {len(bad_windows)} of {total} "
            f"windows: {_names(bad_windows, len(bad_windows))}"
        )
        pm.update(
            ratio=None, ci=None, delta_logloss=None, baseline_ppl=None, subject_ppl=None,
            preview_ratio=None, drift=None, delta_q95=None, bootstrap=None,
        )
        validation["primary_metric_ok"] = False
        validation["drift_ok"] = False
    else:
        summary = summarize_pair(
            [w.baseline_nll for w in final],
            [float(w.subject_nll) for w in final if w.subject_nll is not None],
            [w.tokens for w in final],
            replicates=int(boot["replicates"]),
            alpha=float(boot["alpha"]),
            seed=int(boot["seed"]),
        )
        preview_ratio = _ratio(preview) if preview else None
        drift = summary.ratio / preview_ratio if preview_ratio else None
        interval = summary.interval
        pm.update(
            ratio=summary.ratio,
            ci=[summary.ci[0], summary.ci[1]],
            delta_logloss=summary.delta,
            baseline_ppl=safe_exp(summary.baseline_nll),
            subject_ppl=safe_exp(summary.subject_nll),
            preview_ratio=preview_ratio,
            drift=drift,
            delta_q95=summary.delta_q95,
            bootstrap={
                "method": interval.method,
                "replicates": interval.replicates,
                "alpha": interval.alpha,
                "seed": interval.seed,
                "z0": interval.z0,
                "acceleration": interval.acceleration,
            },
        )
        pm_ok = True
        if summary.ratio > hi + tol:
            pm_ok = False
            reasons.append(
                f"primary metric: ratio {_fmt(summary.ratio)} exceeds the acceptance limit "
                f"{hi:.4f} (+{tol} tolerance)"
            )
        if summary.ci[1] > hi + tol:
            pm_ok = False
            reasons.append(
                f"primary metric: CI upper bound {_fmt(summary.ci[1])} exceeds the acceptance "
                f"limit {hi:.4f} (+{tol} tolerance)"
            )
        if summary.ratio < lo - tol:
            pm_ok = False
            reasons.append(
                f"primary metric: ratio {_fmt(summary.ratio)} is below the acceptance range's "
                f"lower bound {lo:.4f} (suspiciously better than the baseline)"
            )
        validation["primary_metric_ok"] = pm_ok
        drift_ok = drift is None or drift_lo <= drift <= drift_hi
        validation["drift_ok"] = drift_ok
        if not drift_ok and drift is not None:
            reasons.append(
                f"drift: final/preview ratio {_fmt(drift)} is outside the band "
                f"[{drift_lo:.3f}, {drift_hi:.3f}]"
            )
        if summary.delta_q95 > float(policy["tail_q95_warn"]):
            warnings.append(
                f"tail: q95 of per-window Δlogloss is {summary.delta_q95:.4f} "
                f"(> {policy['tail_q95_warn']}); some windows degrade much more than average"
            )

    for outcome in guards:
        validation[guard_flag(outcome.name)] = outcome.passed
        if not outcome.passed:
            detail = "; ".join(outcome.violations[:_MAX_NAMED]) or "no violation details"
            reasons.append(f"guard {outcome.name} failed: {detail}")
    validation["guards_ok"] = all(outcome.passed for outcome in guards)
    verdict: Verdict = "FAIL" if reasons else "PASS"
    return Judgement(
        verdict=verdict,
        reasons=tuple(reasons),
        warnings=tuple(warnings),
        validation=validation,
        primary_metric=pm,
    )
