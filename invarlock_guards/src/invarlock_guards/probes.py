"""Explicit cross-model probes for evidence-pack sidecars (``rmt_probe.json``, ``ve_probe.json``).

Compare-mode evaluation can keep ``validation.rmt_stable`` true or mute the variance guard's
evidence; these probes run the RMT and variance measurements directly on the shared calibration
windows of a baseline and a subject and return JSON-ready dicts that state what the delta policy
and the VE calibration concluded. The documents themselves are built by the guards'
:meth:`~invarlock_core.guarding.ProbingGuard.probe` methods (``invarlock evaluate`` calls them
with the chain's cached baseline state); this module owns their common header and offers the
stand-alone entry points.
"""

from __future__ import annotations

from typing import Any

from invarlock_core.guarding import GuardContext, ModelUnderTest, ProbingGuard
from invarlock_guards.probe_header import PROBE_SCHEMA_VERSION, probe_header
from invarlock_guards.rmt import RMTGuard
from invarlock_guards.variance import VarianceGuard

__all__ = ["PROBE_SCHEMA_VERSION", "probe_header", "rmt_probe", "ve_probe"]

def _probe(
    guard: ProbingGuard, baseline: ModelUnderTest, subject: ModelUnderTest, tier: str, seed: int
) -> dict[str, Any]:
    context = GuardContext(tier=tier, seed=seed)
    return guard.probe(subject, guard.prepare(baseline, context), context)


def rmt_probe(
    baseline: ModelUnderTest, subject: ModelUnderTest, *, tier: str = "balanced", seed: int = 0
) -> dict[str, Any]:
    """The RMT delta policy applied across the two models: families, bands and outliers."""
    return _probe(RMTGuard(), baseline, subject, tier, seed)


def ve_probe(
    baseline: ModelUnderTest, subject: ModelUnderTest, *, tier: str = "balanced", seed: int = 0
) -> dict[str, Any]:
    """Whether VE proposes scales for the subject and whether they improve the loss meaningfully."""
    return _probe(VarianceGuard(), baseline, subject, tier, seed)
