"""The variance guard (DD-VE): FFN branch output energy of the subject vs the baseline.

For every FFN branch (see :func:`~invarlock_guards.activation_probe.branch_taps`) the probe records
``mean(y²)`` per calibration window for baseline and subject. The per-window ratios
``q_w = subject_w / baseline_w`` are winsorized at ``[winsor_low, winsor_high]`` quantiles,
split into ``⌈√n⌉`` chunks, and the median of the chunk means is the branch's variance ratio ``v``.

* **band**: ``v`` outside ``[min_ratio, max_ratio]`` is a violation (a failure in ``gating`` mode,
  a warning in ``informational`` mode);
* **proposed scales**: ``α = clamp(1/√v, scale_min, scale_max)``, none inside ``|α − 1| < deadband``;
* **A/B test**: when scales are proposed and the model is a causal LM, the calibration windows are
  scored again with the branch outputs multiplied by ``α`` (the model is not modified). A paired BCa
  bootstrap of the per-window Δ log-loss (``invarlock_core.evaluation.paired_metric``) decides whether the
  correction helps: its upper bound must be below 0 and the relative gain ``1 − exp(Δ)`` at least
  ``min_relative_gain``. A helpful correction is evidence that the edit skewed the branch variances
  and is reported as a warning (``ve_enabled``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from invarlock_core.evaluation.paired_metric import summarize_pair
from invarlock_core.guarding import GuardContext, GuardResult, ModelUnderTest, Severity, Violation
from invarlock_core.report import jsonable
from invarlock_guards.activation_probe import (
    ActivationObserver,
    ActivationProbe,
    observe_activations,
    probe_activations,
)
from invarlock_guards.probe_header import probe_header
from invarlock_guards.results import guard_result
from invarlock_guards.settings_checks import check_choice, check_range
from invarlock_guards.tiers import guard_settings

__all__ = ["VarianceGuard", "VarianceSettings", "branch_ratio", "proposed_scale"]


@attrs.frozen
class VarianceSettings:
    """The variance guard's thresholds."""

    mode: str
    min_ratio: float
    max_ratio: float
    scale_min: float
    scale_max: float
    deadband: float
    winsor_low: float
    winsor_high: float
    ab_replicates: int
    ab_alpha: float
    min_relative_gain: float

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> VarianceSettings:
        where = "guards.variance"
        check_choice(table, "mode", ("informational", "gating"), where=where)
        check_range(table, "min_ratio", 0.0, 1.0, where=where)
        check_range(table, "max_ratio", 1.0, 1e6, where=where)
        check_range(table, "scale_min", 0.01, 1.0, where=where)
        check_range(table, "scale_max", 1.0, 100.0, where=where)
        check_range(table, "deadband", 0.0, 1.0, where=where)
        check_range(table, "winsor_low", 0.0, 0.5, where=where)
        check_range(table, "winsor_high", 0.5, 1.0, where=where)
        check_range(table, "ab_replicates", 10, 1_000_000, where=where)
        check_range(table, "ab_alpha", 1e-6, 0.5, where=where)
        check_range(table, "min_relative_gain", 0.0, 1.0, where=where)
        return cls(**{field.name: table[field.name] for field in attrs.fields(cls)})


def _quantile(ordered: Sequence[float], level: float) -> float:
    """The ``level`` quantile of sorted values, linearly interpolated (numpy's default method,
    including its form of the interpolation)."""
    position = level * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    fraction = position - below
    low, high = ordered[below], ordered[above]
    if fraction >= 0.5:
        return high - (high - low) * (1.0 - fraction)
    return low + (high - low) * fraction


def branch_ratio(
    baseline: Sequence[float], subject: Sequence[float], settings: VarianceSettings
) -> float:
    """The robust variance ratio ``v`` of one branch (``nan`` when undefined).

    Plain Python: a branch has one value per calibration window (8 in ``invarlock evaluate``),
    where numpy's per-call overhead was about 0.2 ms per branch.
    """
    if len(baseline) != len(subject) or not subject:
        return math.nan
    if not all(math.isfinite(v) for v in subject):
        return math.nan
    ratios = [float(s) / float(b) for b, s in zip(baseline, subject) if b > 0]
    if not ratios:
        return 1.0 if all(v == 0 for v in subject) else math.inf
    ordered = sorted(ratios)
    low = _quantile(ordered, settings.winsor_low)
    high = _quantile(ordered, settings.winsor_high)
    clipped = [min(max(v, low), high) for v in ratios]
    # ⌈√n⌉ consecutive chunks of sizes differing by at most one, the larger ones first.
    count = max(1, math.ceil(math.sqrt(len(clipped))))
    size, extra = divmod(len(clipped), count)
    means, start = [], 0
    for index in range(count):
        stop = start + size + (1 if index < extra else 0)
        if stop > start:
            means.append(math.fsum(clipped[start:stop]) / (stop - start))
        start = stop
    return float(statistics.median(means))


def proposed_scale(ratio: float, settings: VarianceSettings) -> float | None:
    """``clamp(1/√v)``, or ``None`` inside the deadband or when ``v`` is not positive and finite."""
    if not math.isfinite(ratio) or ratio <= 0.0:
        return None
    alpha = min(max(1.0 / math.sqrt(ratio), settings.scale_min), settings.scale_max)
    return None if abs(alpha - 1.0) < settings.deadband else alpha


def _ab_test(
    subject: ModelUnderTest,
    probe: ActivationProbe,
    scales: Mapping[str, float],
    settings: VarianceSettings,
    seed: int,
) -> dict[str, Any]:
    if probe.window_nll is None or probe.window_tokens is None:
        return {"ran": False, "reason": "the model is not a causal LM (no next-token loss)"}
    scaled = probe_activations(subject, seed=seed, scales=scales)
    if scaled.window_nll is None:
        return {"ran": False, "reason": "non-finite loss with the proposed scales"}
    pair = summarize_pair(
        probe.window_nll,
        scaled.window_nll,
        probe.window_tokens,
        replicates=settings.ab_replicates,
        alpha=settings.ab_alpha,
        seed=seed,
    )
    gain = 1.0 - pair.ratio
    return {
        "ran": True,
        "windows": pair.windows,
        "delta_logloss": pair.delta,
        "ratio": pair.ratio,
        "ci": list(pair.ci),
        "relative_gain": gain,
        "improves": pair.interval.hi < 0.0 and gain >= settings.min_relative_gain,
    }


@attrs.frozen
class _VarianceState:
    settings: VarianceSettings
    probe: ActivationProbe


class VarianceGuard:
    """FFN branch output variance vs the baseline, proposed scales and their A/B test."""

    name = "variance"
    summary = "FFN branch output variance vs the baseline (DD-VE scales with a paired A/B test)"

    def observer(self, model: ModelUnderTest, context: GuardContext) -> ActivationObserver | None:
        """Take the activation probe from the evaluation's own scoring passes (no extra pass)."""
        return observe_activations(model, seed=context.seed)

    def prepare(self, baseline: ModelUnderTest, context: GuardContext) -> _VarianceState:
        settings = VarianceSettings.from_table(
            guard_settings(self.name, context.tier, context.options)
        )
        return _VarianceState(settings, probe_activations(baseline, seed=context.seed))

    def validate(
        self, subject: ModelUnderTest, baseline_state: _VarianceState, context: GuardContext
    ) -> GuardResult:
        settings = baseline_state.settings
        thresholds = attrs.asdict(settings)
        probe = probe_activations(subject, seed=context.seed)
        if probe.windows == 0:
            note = Violation(
                "calibration", "no calibration windows: variance not measured", severity="warn"
            )
            return guard_result(self.name, [note], metrics={"windows": 0}, thresholds=thresholds)
        band_severity: Severity = "fail" if settings.mode == "gating" else "warn"
        found: list[Violation] = []
        ratios: dict[str, float | None] = {}
        scales: dict[str, float] = {}
        base_energy = baseline_state.probe.branch_energy
        for name in sorted(base_energy.keys() & probe.branch_energy.keys()):
            ratio = branch_ratio(base_energy[name], probe.branch_energy[name], settings)
            ratios[name] = ratio if math.isfinite(ratio) else None
            if math.isnan(ratio):
                found.append(
                    Violation(name, "branch output variance is undefined (non-finite outputs)")
                )
                continue
            if not settings.min_ratio <= ratio <= settings.max_ratio:
                found.append(
                    Violation(
                        name,
                        f"branch output variance x{ratio:.4g} of the baseline's "
                        f"(band {settings.min_ratio:g}..{settings.max_ratio:g})",
                        value=ratio if math.isfinite(ratio) else None,
                        threshold=settings.max_ratio if ratio > 1 else settings.min_ratio,
                        severity=band_severity,
                    )
                )
            alpha = proposed_scale(ratio, settings)
            if alpha is not None:
                scales[name] = alpha
        ab: dict[str, Any] = {"ran": False, "reason": "no scales proposed"}
        if scales:
            ab = _ab_test(subject, probe, scales, settings, context.seed)
        if ab.get("improves"):
            found.append(
                Violation(
                    "variance.ab",
                    f"correcting {len(scales)} branch scale(s) improves the loss by "
                    f"{ab['relative_gain']:.2%} (CI of the ratio {ab['ci'][0]:.4g}..{ab['ci'][1]:.4g})",
                    value=ab["relative_gain"],
                    threshold=settings.min_relative_gain,
                    severity="warn",
                )
            )
        finite = [r for r in ratios.values() if r is not None]
        metrics = {
            "mode": settings.mode,
            "windows": probe.windows,
            "branches": len(ratios),
            "min_ratio": min(finite) if finite else None,
            "max_ratio": max(finite) if finite else None,
            "proposed_scales": len(scales),
            "ve_enabled": bool(ab.get("improves")),
            "ab": ab,
        }
        details = {"ratios": ratios, "scales": scales}
        return guard_result(
            self.name, found, metrics=metrics, thresholds=thresholds, details=details
        )

    def probe(
        self,
        subject: ModelUnderTest,
        baseline_state: _VarianceState,
        context: GuardContext,
        validated: GuardResult | None = None,
    ) -> dict[str, Any]:
        """The ``ve_probe.json`` document: proposed scales and whether their A/B test helps."""
        result = self.validate(subject, baseline_state, context) if validated is None else validated
        ab = result.metrics.get("ab", {})
        document: dict[str, Any] = jsonable(
            {
                **probe_header("ve_probe", context),
                "windows": result.metrics.get("windows", 0),
                "proposes_scales": bool(result.details.get("scales")),
                "scales": result.details.get("scales", {}),
                "ratios": result.details.get("ratios", {}),
                "ab": ab,
                "meaningful_improvement": bool(ab.get("improves")),
                "thresholds": result.thresholds,
            }
        )
        return document
