"""The RMT guard: activation spectra of the subject vs the baseline on the same calibration windows.

For every probed module the ratio ``r = σ_max(Â) / (√m + √n)`` of its standardised output (see
:mod:`invarlock_guards.activation_probe`) measures how far the top singular value sits above the
Marchenko–Pastur bulk edge. Per family ``f`` the guard fails when
``max_f r_subject > (1 + ε_f) · max_f r_baseline`` (the epsilon band); a module whose own ratio
grows by more than ``ε_f`` is an *outlier*, and more than ``max_outliers`` outliers fail the guard.
Non-finite activations always fail.

Growth is one direction; **collapse** is the other. Per module, subject over baseline, the guard
fails when the output's mean column variance falls below ``collapse.variance_fail`` (a zero or
near-constant output), its fraction of non-constant columns below ``collapse.live_fail`` (features
that became constant), the stable rank of its standardised output below ``collapse.rank_fail``
(rank collapse: the output concentrated in few directions), or its ratio ``r`` below
``collapse.ratio_fail`` (the spectrum flattened towards noise).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs

from invarlock_core.errors import ConfigError
from invarlock_core.guarding import GuardContext, GuardResult, ModelUnderTest, Violation
from invarlock_core.report import jsonable
from invarlock_guards.activation_probe import (
    ActivationObserver,
    ActivationProbe,
    ModuleRatio,
    observe_activations,
    probe_activations,
)
from invarlock_guards.probe_header import probe_header
from invarlock_guards.results import guard_result
from invarlock_guards.settings_checks import check_families, check_range
from invarlock_guards.tiers import guard_settings

__all__ = ["COLLAPSE_FIELDS", "CollapseSettings", "RMTGuard", "RMTSettings", "compare_rmt"]

_PROBED_FAMILIES = ("ffn", "attn", "router", "expert_ffn", "other")
_TOP_MODULES = 10


@attrs.frozen
class CollapseSettings:
    """Collapse thresholds: the smallest subject/baseline ratio each statistic may fall to."""

    variance_fail: float
    live_fail: float
    rank_fail: float
    ratio_fail: float

    @classmethod
    def from_table(cls, table: Mapping[str, Any], *, where: str) -> CollapseSettings:
        for key in ("variance_fail", "live_fail", "rank_fail", "ratio_fail"):
            check_range(table, key, 0.0, 1.0, where=where)
        return cls(**{key: float(value) for key, value in table.items()})


@attrs.frozen
class RMTSettings:
    """The RMT guard's thresholds."""

    families: tuple[str, ...]
    epsilon: Mapping[str, float]
    max_outliers: int
    collapse: CollapseSettings

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> RMTSettings:
        where = "guards.rmt"
        families = tuple(str(f) for f in table["families"])
        unknown = sorted(set(families) - set(_PROBED_FAMILIES))
        if unknown:
            raise ConfigError(
                f"option {where}.families has unknown families {unknown}; valid: {', '.join(_PROBED_FAMILIES)}"
            )
        check_families(table["epsilon"], families, 0.0, 100.0, where=f"{where}.epsilon")
        check_range(table, "max_outliers", 0, 1_000_000, where=where)
        return cls(
            families=families,
            epsilon={f: float(table["epsilon"][f]) for f in families},
            max_outliers=int(table["max_outliers"]),
            collapse=CollapseSettings.from_table(table["collapse"], where=f"{where}.collapse"),
        )


def _shrink(subject: float, baseline: float) -> float:
    """``subject / baseline`` of a non-negative statistic (``nan`` when either is unknown)."""
    if math.isnan(subject) or math.isnan(baseline):
        return math.nan
    if baseline > 0.0:
        return subject / baseline
    return 1.0 if subject <= 0.0 else math.inf


_COLLAPSES = (
    ("variance", "variance_fail", "output variance (scale collapse: zero or near-constant output)"),
    ("live", "live_fail", "non-constant output features"),
    ("rank", "rank_fail", "stable rank of the standardised output (rank collapse)"),
    ("ratio", "ratio_fail", "activation spectrum ratio (spectrum collapse)"),
)


COLLAPSE_FIELDS: tuple[str, ...] = tuple(field for field, _key, _what in _COLLAPSES)
"""The collapse statistics: ``variance``, ``live``, ``rank`` and ``ratio``."""


def _collapses(
    name: str, base: ModuleRatio, subj: ModuleRatio, settings: CollapseSettings
) -> tuple[dict[str, float], list[Violation]]:
    """The subject/baseline ratio of each collapse statistic, and the ones that fell too far."""
    shrinks, found = {}, []
    for field, key, what in _COLLAPSES:
        shrink = _shrink(getattr(subj, field), getattr(base, field))
        shrinks[field] = shrink
        limit = getattr(settings, key)
        if shrink < limit:
            found.append(
                Violation(
                    name,
                    f"{field}: {what} fell to x{shrink:.4g} of the baseline's",
                    value=shrink,
                    threshold=limit,
                )
            )
    return shrinks, found


def compare_rmt(
    baseline: Mapping[str, ModuleRatio],
    subject: Mapping[str, ModuleRatio],
    settings: RMTSettings,
) -> tuple[list[Violation], dict[str, Any], dict[str, Any]]:
    """Violations, metrics and details of the subject's ratios against the baseline's."""
    found: list[Violation] = []
    families: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    outliers = 0
    for name in sorted(baseline.keys() & subject.keys()):
        family = subject[name].family
        if family not in settings.families:
            continue
        epsilon = settings.epsilon[family]
        b, s = baseline[name].ratio, subject[name].ratio
        growth = s / b if b > 0 else (1.0 if s == 0 else float("inf"))
        shrinks, collapsed = _collapses(name, baseline[name], subject[name], settings.collapse)
        found.extend(collapsed)
        rows.append(
            {
                "module": name,
                "family": family,
                "baseline": b,
                "subject": s,
                "growth": growth,
                **{f"{field}_ratio": value for field, value in shrinks.items()},
            }
        )
        entry = families.setdefault(
            family,
            {
                "modules": 0,
                "baseline_max": 0.0,
                "subject_max": 0.0,
                "outliers": 0,
                "epsilon": epsilon,
                **{f"min_{field}_ratio": math.inf for field, _k, _w in _COLLAPSES},
            },
        )
        entry["modules"] += 1
        for field, value in shrinks.items():
            if not math.isnan(value):
                key = f"min_{field}_ratio"
                entry[key] = min(entry[key], value)
        entry["baseline_max"] = max(entry["baseline_max"], b)
        entry["subject_max"] = max(entry["subject_max"], s)
        if growth > 1.0 + epsilon:
            outliers += 1
            entry["outliers"] += 1
            found.append(
                Violation(
                    name,
                    f"activation spectrum ratio {s:.4g} grew x{growth:.4g} over the baseline's {b:.4g}",
                    value=growth,
                    threshold=1.0 + epsilon,
                    severity="warn",
                )
            )
    for family, entry in sorted(families.items()):
        for field, _key, _what in _COLLAPSES:
            if math.isinf(entry[f"min_{field}_ratio"]):
                entry[f"min_{field}_ratio"] = None
        limit = (1.0 + entry["epsilon"]) * entry["baseline_max"]
        entry["band_ratio"] = (
            entry["subject_max"] / entry["baseline_max"] if entry["baseline_max"] > 0 else None
        )
        if entry["subject_max"] > limit:
            found.append(
                Violation(
                    f"family:{family}",
                    f"largest ratio {entry['subject_max']:.4g} exceeds (1 + {entry['epsilon']:g}) x the "
                    f"baseline's {entry['baseline_max']:.4g}",
                    value=entry["subject_max"],
                    threshold=limit,
                )
            )
    if outliers > settings.max_outliers:
        found.append(
            Violation(
                "rmt.outliers",
                f"{outliers} modules outside their epsilon band, more than max_outliers {settings.max_outliers}",
                value=float(outliers),
                threshold=float(settings.max_outliers),
            )
        )
    rows.sort(key=lambda row: (-row["growth"], row["module"]))
    metrics = {"modules": len(rows), "outliers": outliers, "families": families}
    return found, metrics, {"top_modules": rows[:_TOP_MODULES]}


@attrs.frozen
class _RMTState:
    settings: RMTSettings
    probe: ActivationProbe


class RMTGuard:
    """Activation spectra vs the Marchenko–Pastur edge, subject vs baseline per family."""

    name = "rmt"
    summary = (
        "activation σ_max over the Marchenko–Pastur edge vs the baseline, per family (ε bands)"
    )

    def observer(self, model: ModelUnderTest, context: GuardContext) -> ActivationObserver | None:
        """Take the activation probe from the evaluation's own scoring passes (no extra pass)."""
        return observe_activations(model, seed=context.seed)

    def prepare(self, baseline: ModelUnderTest, context: GuardContext) -> _RMTState:
        settings = RMTSettings.from_table(guard_settings(self.name, context.tier, context.options))
        return _RMTState(settings, probe_activations(baseline, seed=context.seed))

    def validate(
        self, subject: ModelUnderTest, baseline_state: _RMTState, context: GuardContext
    ) -> GuardResult:
        settings = baseline_state.settings
        thresholds = {
            "epsilon": dict(settings.epsilon),
            "families": list(settings.families),
            "max_outliers": settings.max_outliers,
            "collapse": attrs.asdict(settings.collapse),
        }
        probe = probe_activations(subject, seed=context.seed)
        if probe.windows == 0:
            note = Violation(
                "calibration", "no calibration windows: RMT not measured", severity="warn"
            )
            return guard_result(self.name, [note], metrics={"windows": 0}, thresholds=thresholds)
        probe.solve(baseline_state.probe)  # both sides' problems in one set of solves
        violations, metrics, details = compare_rmt(baseline_state.probe.rmt, probe.rmt, settings)
        violations.extend(
            Violation(name, "non-finite activations") for name in probe.nonfinite_outputs
        )
        metrics = {
            **metrics,
            "windows": probe.windows,
            "nonfinite_modules": len(probe.nonfinite_outputs),
        }
        return guard_result(
            self.name, violations, metrics=metrics, thresholds=thresholds, details=details
        )

    def probe(
        self,
        subject: ModelUnderTest,
        baseline_state: _RMTState,
        context: GuardContext,
        validated: GuardResult | None = None,
    ) -> dict[str, Any]:
        """The ``rmt_probe.json`` document: what the ε-band delta policy saw across the two models."""
        result = self.validate(subject, baseline_state, context) if validated is None else validated
        document: dict[str, Any] = jsonable(
            {
                **probe_header("rmt_probe", context),
                "windows": result.metrics.get("windows", 0),
                "families": result.metrics.get("families", {}),
                "outliers": result.metrics.get("outliers", 0),
                "delta_detected": any(v.target != "calibration" for v in result.violations),
                "rmt_stable": result.passed,
                "thresholds": result.thresholds,
                "top_modules": result.details.get("top_modules", []),
            }
        )
        return document
