"""The guard chain of an evaluation: which guards run, with which contexts, and how their
failures count.

The :class:`~invarlock_core.guarding.GuardChain` caches each guard's baseline state, so one
baseline serves any number of subjects. A guard that raises while measuring the baseline is an
:class:`~invarlock_core.errors.EvaluationError` (the reference is unusable); one that raises on a
subject is recorded as a synthetic FAIL for that guard, because a damaged subject may well break
a measurement.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import attrs

from invarlock_core.errors import EvaluationError, InvarlockError
from invarlock_core.guarding import (
    DEFAULT_GUARD_ORDER,
    GuardChain,
    GuardContext,
    GuardResult,
    ModelUnderTest,
    Violation,
)
from invarlock_core.report.sections import GuardChainRecord

if TYPE_CHECKING:
    from invarlock_core.evaluation.policy import Preset
    from invarlock_core.plugins import Registries

__all__ = ["GuardPlan", "GuardRun", "plan_guards"]


@attrs.frozen
class GuardRun:
    """Every guard's result for one subject, and the guards that raised on it."""

    results: tuple[GuardResult, ...]
    crashed: frozenset[str]


@attrs.frozen(eq=False)
class GuardPlan:
    """The chain (with its cache of baseline states), the guards' contexts and what was skipped."""

    chain: GuardChain
    contexts: dict[str, GuardContext]
    installed: tuple[str, ...]
    skipped: tuple[str, ...]

    def prepare(self, baseline: ModelUnderTest) -> None:
        """Measure the baseline with every guard (cached in the chain)."""
        for name in self.chain.order:
            try:
                self.chain.baseline_state(name, baseline, self.contexts[name])
            except InvarlockError:
                raise
            except Exception as exc:
                raise EvaluationError(
                    f"guard {name} failed while measuring the baseline: {type(exc).__name__}: {exc}"
                ) from exc

    def validate(self, baseline: ModelUnderTest, subject: ModelUnderTest) -> GuardRun:
        """Every guard's result for ``subject`` against its cached baseline state."""
        results, crashed = [], set()
        for name in self.chain.order:
            context = self.contexts[name]
            state = self.chain.baseline_state(name, baseline, context)
            start = time.perf_counter()
            try:
                result = self.chain.registry.get(name).validate(subject, state, context)
            except InvarlockError:
                raise
            except Exception as exc:  # a crash on a damaged subject is a FAIL, not a crash
                result = _crashed(name, exc)
                crashed.add(name)
            results.append(attrs.evolve(result, seconds=time.perf_counter() - start))
        return GuardRun(results=tuple(results), crashed=frozenset(crashed))

    def describe(self) -> GuardChainRecord:
        note = None
        if not self.installed:
            note = "no guard plugins are installed: only the primary metric was checked"
        elif self.skipped:
            note = f"default guards not installed and skipped: {', '.join(self.skipped)}"
        return GuardChainRecord(
            order=self.chain.order,
            installed=self.installed,
            skipped=self.skipped,
            note=note,
            baseline_prepare_calls=self.chain.prepare_calls,
        )


def _crashed(name: str, exc: BaseException) -> GuardResult:
    message = f"guard raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return GuardResult(
        name=name,
        passed=False,
        severity="fail",
        violations=(Violation(target="guard", message=message.rstrip(": ")),),
    )


def _order(requested: tuple[str, ...] | None, preset: Preset | None) -> tuple[tuple[str, ...], bool]:
    """The chain's order and whether it was asked for explicitly (then every name must exist)."""
    if requested is not None:
        return requested, True
    if preset is not None and preset.guard_order is not None:
        return preset.guard_order, True
    return DEFAULT_GUARD_ORDER, False


def plan_guards(
    registries: Registries, *, requested: tuple[str, ...] | None, preset: Preset | None, tier: str, seed: int
) -> GuardPlan:
    """The guard plan: an explicit order must name installed guards; the default order skips
    the ones that are not installed (and the report says so)."""
    order, explicit = _order(requested, preset)
    skipped: tuple[str, ...] = ()
    if not explicit:
        skipped = tuple(dict.fromkeys(n for n in order if n not in registries.guards))
        order = tuple(n for n in order if n in registries.guards)
    chain = GuardChain(registries.guards, order)
    options = preset.guard_options if preset is not None else {}
    contexts = {
        name: GuardContext(tier=tier, options=dict(options.get(name, {})), seed=seed) for name in chain.order
    }
    return GuardPlan(chain=chain, contexts=contexts, installed=tuple(registries.guards.names()), skipped=skipped)
