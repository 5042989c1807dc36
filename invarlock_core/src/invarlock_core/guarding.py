"""The guard plugin contract and the guard-chain runner.

A guard compares the subject **with the baseline**: :meth:`Guard.prepare` measures the baseline
once, :meth:`Guard.validate` measures the subject and judges it against that baseline state.
:class:`GuardChain` runs guards in order and caches each baseline state, so evaluating many
subjects against one baseline measures the baseline once per guard and configuration.

A guard may also be a :class:`ProbingGuard`: it can summarise one subject-versus-baseline
measurement as a JSON probe document, which ``invarlock evaluate`` writes as a sidecar beside the
report when the subject's edit metadata asks for it (``detection.probe``).

A guard may also be an :class:`ObservingGuard`: instead of running its own forward pass over the
calibration windows it hands the evaluation a :class:`ForwardObserver`, which sees the forward
passes the evaluation runs anyway to score its windows (the calibration windows are the first of
them), so activation statistics cost no extra pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, TypeGuard, runtime_checkable

import attrs

from invarlock_core.canonical import canonical_digest
from invarlock_core.errors import UsageError
from invarlock_core.registry import Registry

__all__ = [
    "DEFAULT_GUARD_ORDER",
    "ForwardObserver",
    "Guard",
    "GuardChain",
    "GuardContext",
    "GuardResult",
    "ModelUnderTest",
    "ObservingGuard",
    "ProbingGuard",
    "Severity",
    "Violation",
]

DEFAULT_GUARD_ORDER: tuple[str, ...] = ("invariants", "spectral", "rmt", "variance", "invariants")
"""The canonical chain. A guard named twice runs once: guards never mutate the subject."""

Severity = Literal["pass", "warn", "fail"]


@attrs.frozen
class Violation:
    """One finding of a guard, naming the module or tensor it concerns."""

    target: str
    message: str
    value: float | None = None
    threshold: float | None = None
    severity: Severity = "fail"


@attrs.frozen
class GuardResult:
    """The outcome of one guard on one subject."""

    name: str
    passed: bool
    severity: Severity
    metrics: dict[str, Any] = attrs.field(factory=dict)
    violations: tuple[Violation, ...] = ()
    thresholds: dict[str, Any] = attrs.field(factory=dict)
    details: dict[str, Any] = attrs.field(factory=dict)
    seconds: float = 0.0


@attrs.define(eq=False)
class ModelUnderTest:
    """A loaded model plus what guards need to know about it.

    ``model`` is a ``torch.nn.Module``; ``calibration`` holds input-id tensors of shape
    ``[batch, seq]`` drawn from the evaluation's calibration windows (identical for baseline and
    subject); ``digest`` identifies the checkpoint (used to cache baseline states).

    ``unchanged`` (subjects only) names the parameters whose values are bit-identical to the
    baseline's, as established by whoever built this object: ``invarlock evaluate`` compares the
    stored bytes of both checkpoints right after loading
    (:func:`invarlock_core.evaluation.unchanged_tensors.unchanged_parameters`). A guard may take its baseline
    measurement of such a parameter instead of measuring it again. Empty (nothing assumed) by
    default; never claim a parameter the model may have changed in memory.

    ``nonfinite`` holds the NaN/Inf count of every parameter and buffer that has any, under the
    names ``named_parameters()`` and ``named_buffers()`` give, when whoever built this object has
    already counted them (``invarlock evaluate`` counts the subject's for its report), so a guard
    need not count again; ``None`` (the default) when nobody has.
    """

    role: Literal["baseline", "subject"]
    model: Any
    checkpoint: Path
    digest: str
    calibration: Sequence[Any] = ()
    device: str = "cpu"
    unchanged: frozenset[str] = frozenset()
    nonfinite: Mapping[str, int] | None = None


@attrs.frozen
class GuardContext:
    """Configuration passed to every guard: the tier, this guard's options, and the seed."""

    tier: str = "balanced"
    options: Mapping[str, Any] = attrs.field(factory=dict)
    seed: int = 0


@runtime_checkable
class Guard(Protocol):
    """A baseline-relative check of a subject model."""

    @property
    def name(self) -> str: ...

    @property
    def summary(self) -> str: ...

    def prepare(self, baseline: ModelUnderTest, context: GuardContext) -> Any:
        """Measure the baseline; the returned state is cached and passed to :meth:`validate`."""
        ...

    def validate(
        self, subject: ModelUnderTest, baseline_state: Any, context: GuardContext
    ) -> GuardResult:
        """Measure the subject and judge it against the baseline state."""
        ...


@runtime_checkable
class ProbingGuard(Guard, Protocol):
    """Optional capability: a guard that can write an explicit cross-model probe document.

    Compare-mode evaluation may keep a guard green (or a remediation guard silent) while its
    measurement still moved; a probe states what the guard measured across the two models in a
    small stable document (an evidence pack's ``rmt_probe.json`` / ``ve_probe.json``).
    ``invarlock evaluate`` calls :meth:`probe` with the chain's cached baseline state, the subject
    on the chain's calibration windows, the guard's context, and the result the chain just
    produced, and checks this capability with ``isinstance(guard, ProbingGuard)``.
    """

    def probe(
        self,
        subject: ModelUnderTest,
        baseline_state: Any,
        context: GuardContext,
        validated: GuardResult | None = None,
    ) -> dict[str, Any]:
        """A JSON-ready document with ``kind`` and ``schema_version``; deterministic, no timestamps.

        ``validated`` is this guard's own :meth:`~Guard.validate` result for exactly these
        arguments when the caller already has it (the evaluation passes the chain's): summarise
        it rather than measure the subject again. ``None``: measure.
        """
        ...


class ForwardObserver(Protocol):
    """Sees the forward passes an evaluation runs to score its windows, batch by batch.

    The caller invokes :meth:`begin_batch` before and :meth:`end_batch` after every scoring batch
    of one model, in order, and :meth:`finish` once when scoring is over (also after an error).
    An observer watches only the batches it recognises (its calibration windows) and must leave
    the model as it found it after :meth:`finish`. If the batches never match what it needs, it
    records nothing and its guard measures on its own, as without an observer.
    """

    @property
    def seconds(self) -> float:
        """Wall time the observer spent so far: setting up, in its hooks and callbacks,
        finishing (reported with the guard timings, not the scoring's)."""
        ...

    def begin_batch(self, input_ids: Any) -> None: ...

    def end_batch(self, input_ids: Any, window_nll: Sequence[float]) -> None:
        """``window_nll``: the batch's per-window mean next-token NLL, as the evaluation scored it."""
        ...

    def finish(self) -> None: ...


@runtime_checkable
class ObservingGuard(Guard, Protocol):
    """Optional capability: a guard that can measure from the evaluation's own forward passes."""

    def observer(self, model: ModelUnderTest, context: GuardContext) -> ForwardObserver | None:
        """An observer that will produce this guard's measurement of ``model`` from the caller's
        scoring passes, or ``None`` (already measured, or nothing to observe). Guards sharing a
        measurement may return the same observer object; the caller uses it once."""
        ...


class GuardChain:
    """Runs guards in order, caching baseline states across subjects."""

    def __init__(self, registry: Registry[Guard], order: Sequence[str] = DEFAULT_GUARD_ORDER):
        unknown = [name for name in order if name not in registry]
        if unknown:
            valid = ", ".join(registry.names()) or "none installed"
            raise UsageError(f"unknown guard(s) {', '.join(unknown)}; valid: {valid}")
        self.registry = registry
        self.order: tuple[str, ...] = tuple(dict.fromkeys(order))
        self._states: dict[tuple[str, str, str], Any] = {}
        self._keys: dict[int, tuple[GuardContext, str]] = {}
        self._observing_types: dict[type, bool] = {}
        self.prepare_calls = 0

    def _context_key(self, context: GuardContext) -> str:
        # Memoised per context object (kept alive here, so its id is never reused); contexts are
        # frozen, but their options may be a mutable mapping, so they are not hashed.
        known = self._keys.get(id(context))
        if known is not None and known[0] is context:
            return known[1]
        key = canonical_digest(
            {"tier": context.tier, "options": dict(context.options), "seed": context.seed}
        )
        self._keys[id(context)] = (context, key)
        return key

    def baseline_state(self, name: str, baseline: ModelUnderTest, context: GuardContext) -> Any:
        """The cached baseline state of guard ``name`` (computed on first use)."""
        key = (name, baseline.digest, self._context_key(context))
        if key not in self._states:
            self._states[key] = self.registry.get(name).prepare(baseline, context)
            self.prepare_calls += 1
        return self._states[key]

    def _observing(self, guard: Guard) -> TypeGuard[ObservingGuard]:
        # A runtime protocol check walks the protocol's members each time: once per guard type.
        kind = type(guard)
        if kind not in self._observing_types:
            self._observing_types[kind] = isinstance(guard, ObservingGuard)
        return self._observing_types[kind]

    def observers(
        self, model: ModelUnderTest, contexts: Mapping[str, GuardContext]
    ) -> list[ForwardObserver]:
        """The distinct observers of the chain's observing guards for ``model``.

        For a baseline, guards whose state is already cached are skipped: they will not measure it.
        """
        found: list[ForwardObserver] = []
        for name in self.order:
            guard = self.registry.get(name)
            context = contexts.get(name, GuardContext())
            cached = (name, model.digest, self._context_key(context)) in self._states
            if (model.role == "baseline" and cached) or not self._observing(guard):
                continue
            observer = guard.observer(model, context)
            if observer is not None and all(observer is not known for known in found):
                found.append(observer)
        return found
