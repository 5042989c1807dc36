"""Explicit cross-model probes for evidence-pack sidecars (``rmt_probe.json``, ``ve_probe.json``).

Compare-mode evaluation can keep ``validation.rmt_stable`` true or mute the variance guard's
evidence; these probes run the RMT and variance measurements directly on the shared calibration
windows of a baseline and a subject and return JSON-ready dicts that state what the delta policy
and the VE calibration concluded. They are thin wrappers over the guards themselves.
"""

from __future__ import annotations

from typing import Any

from invarlock_core.guarding import GuardContext, ModelUnderTest
from invarlock_guards.rmt import RMTGuard
from invarlock_guards.variance import VarianceGuard

__all__ = ["PROBE_SCHEMA_VERSION", "rmt_probe", "ve_probe"]

PROBE_SCHEMA_VERSION = 1


def rmt_probe(
    baseline: ModelUnderTest, subject: ModelUnderTest, *, tier: str = "balanced", seed: int = 0
) -> dict[str, Any]:
    """The RMT delta policy applied across the two models: families, bands and outliers."""
    guard = RMTGuard()
    context = GuardContext(tier=tier, seed=seed)
    result = guard.validate(subject, guard.prepare(baseline, context), context)
    return {
        "kind": "rmt_probe",
        "schema_version": PROBE_SCHEMA_VERSION,
        "tier": tier,
        "seed": seed,
        "windows": result.metrics.get("windows", 0),
        "families": result.metrics.get("families", {}),
        "outliers": result.metrics.get("outliers", 0),
        "delta_detected": any(
            v.target.startswith("family:") or v.severity == "warn" for v in result.violations
        ),
        "rmt_stable": result.passed,
        "thresholds": result.thresholds,
        "top_modules": result.details.get("top_modules", []),
    }


def ve_probe(
    baseline: ModelUnderTest, subject: ModelUnderTest, *, tier: str = "balanced", seed: int = 0
) -> dict[str, Any]:
    """Whether VE proposes scales for the subject and whether they improve the loss meaningfully."""
    guard = VarianceGuard()
    context = GuardContext(tier=tier, seed=seed)
    result = guard.validate(subject, guard.prepare(baseline, context), context)
    ab = result.metrics.get("ab", {})
    return {
        "kind": "ve_probe",
        "schema_version": PROBE_SCHEMA_VERSION,
        "tier": tier,
        "seed": seed,
        "windows": result.metrics.get("windows", 0),
        "proposes_scales": bool(result.details.get("scales")),
        "scales": result.details.get("scales", {}),
        "ratios": result.details.get("ratios", {}),
        "ab": ab,
        "meaningful_improvement": bool(ab.get("improves")),
        "thresholds": result.thresholds,
    }
