"""One forward pass over the calibration windows that feeds the RMT and variance guards.

Forward hooks record, per batch and without keeping activations alive:

* for every module that owns a weight matrix (embeddings and norms excluded), the RMT ratio
  ``r = σ_max(Â) / (√m + √n)`` of its output ``A`` (``m`` tokens x ``n`` features) after
  standardising every column to zero mean and unit variance (``√m + √n`` is the Marchenko–Pastur
  edge of a pure-noise matrix of that shape); ratios are token-weighted over batches;
* for every FFN branch (the module owning the last FFN matrix of a block, or the whole MoE block for
  experts), the mean square ``mean(y²)`` of its output per window;
* the per-window next-token NLL when the model is a causal LM (for the variance guard's A/B test).

Results are cached per :class:`ModelUnderTest` object, so the RMT and variance guards share one pass
per model. Inside ``invarlock evaluate`` that pass is the evaluation's own scoring of the calibration
windows: :class:`ActivationObserver` hooks it and fills the cache, and no second forward pass runs.
With ``scales`` the FFN branch outputs are multiplied by per-module factors during the pass (the
subject is never modified; the hooks are removed afterwards).

How the ratios are computed cheaply (output or input Grams, stacked solves) is described in
:mod:`invarlock_guards.activation_grams`. A probe's ratios are solved when first read, or
together with other probes' by :meth:`ActivationProbe.solve`: the RMT guard solves the baseline's
and the subject's standardised Grams in one set of stacked solves (a pass with more than 2^24 Gram
elements is solved at once rather than kept).
"""

from __future__ import annotations

import contextlib
import math
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from invarlock_core.evaluation.scoring import window_nll
from invarlock_core.families import classify, layer_index
from invarlock_core.guarding import ModelUnderTest
from invarlock_core.optional_deps import require
from invarlock_guards.activation_grams import GramQueue, Spread, linear_map

__all__ = [
    "ActivationObserver",
    "ActivationProbe",
    "ModuleRatio",
    "branch_taps",
    "observe_activations",
    "probe_activations",
    "rmt_modules",
]

_SKIP_FAMILIES = ("embed", "norm")
_BATCH = 8  # windows per forward pass; RMT ratios are measured per batch


@attrs.frozen
class ModuleRatio:
    """Token-weighted RMT ratio of one module's output, and how its output is spread (the RMT
    guard's collapse checks; ``nan`` where not measured)."""

    family: str
    ratio: float
    tokens: int
    features: int
    variance: float = math.nan
    """Mean column variance of the output."""
    live: float = math.nan
    """Fraction of output columns that are not constant."""
    rank: float = math.nan
    """Stable rank of the standardised output."""


_DEFER_ELEMENTS = 1 << 24
"""A pass keeps its standardised Grams for a later joint solve only up to this many elements
(64 MiB of float32); a larger set is solved at once."""


def _token_mean(spreads: Sequence[Spread], field: Callable[[Spread], float]) -> float:
    """Token-weighted mean of one field over the batches (``nan`` without any)."""
    weight = sum(spread.tokens for spread in spreads)
    if not weight:
        return math.nan
    return sum(field(spread) * spread.tokens for spread in spreads) / weight


class _Ratios:
    """The RMT ratios of one pass, solved on first use, or together with other passes' by
    :meth:`solve` (the RMT guard solves the baseline's and the subject's in one call)."""

    def __init__(self, queue: GramQueue) -> None:
        self._queue = queue
        self._modules: dict[str, ModuleRatio] | None = None
        self._nonfinite: tuple[str, ...] = ()
        if queue.pending() > _DEFER_ELEMENTS:
            self.solve()

    def solve(self, *others: _Ratios) -> None:
        """Solve the unsolved ones of these ratios and ``others``: one set of stacked solves per
        seed."""
        by_seed: dict[int, list[_Ratios]] = {}
        for ratios in {id(r): r for r in (self, *others)}.values():
            if ratios._modules is None:
                by_seed.setdefault(ratios._queue.seed, []).append(ratios)
        for group in by_seed.values():
            group[0]._queue.solve(*(r._queue for r in group[1:]))
            for ratios in group:
                ratios._collect()

    def _collect(self) -> None:
        modules = {}
        for name, values in self._queue.ratios.items():
            total = sum(rows for _r, rows, _c in values)
            spreads = self._queue.spreads.get(name, [])
            modules[name] = ModuleRatio(
                family=classify(name),
                ratio=sum(r * rows for r, rows, _c in values) / total,
                tokens=total,
                features=values[0][2],
                variance=_token_mean(spreads, lambda s: s.variance),
                live=_token_mean(spreads, lambda s: s.live),
                rank=_token_mean(spreads, lambda s: s.rank),
            )
        self._modules = modules
        self._nonfinite = tuple(sorted(self._queue.nonfinite))

    @property
    def modules(self) -> Mapping[str, ModuleRatio]:
        if self._modules is None:
            self.solve()
        assert self._modules is not None
        return self._modules

    @property
    def nonfinite(self) -> tuple[str, ...]:
        if self._modules is None:
            self.solve()
        return self._nonfinite


@attrs.frozen
class ActivationProbe:
    """What one pass over the calibration windows measured."""

    ratios: _Ratios = attrs.field(repr=False)
    branch_energy: Mapping[str, tuple[float, ...]]
    """FFN branch -> per-window ``mean(y²)``."""
    window_nll: tuple[float, ...] | None
    window_tokens: tuple[int, ...] | None
    windows: int

    @property
    def rmt(self) -> Mapping[str, ModuleRatio]:
        """Module -> token-weighted RMT ratio (solved on first use unless :meth:`solve` was)."""
        return self.ratios.modules

    def solve(self, *others: ActivationProbe) -> None:
        """Solve the RMT problems of this probe and of ``others`` in one set of stacked solves
        (probes of another seed, or already solved, are left to themselves)."""
        self.ratios.solve(*(other.ratios for other in others))

    @property
    def nonfinite_outputs(self) -> tuple[str, ...]:
        """Modules with a non-finite activation."""
        return self.ratios.nonfinite


def _matrix_owners(model: Any) -> dict[str, str]:
    """Module name -> name of its last matrix parameter (``ndim >= 2``), for the modules that
    own one, in one walk over the parameters."""
    owners: dict[str, str] = {}
    for name, parameter in model.named_parameters():
        if parameter.ndim >= 2:
            owners[name.rpartition(".")[0]] = name
    return owners


def _tracked(model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`rmt_modules` and :func:`branch_taps` of ``model`` from one walk of each kind."""
    modules = dict(model.named_modules())
    owners = _matrix_owners(model)
    measured = {
        name: modules[name]
        for name in modules
        if name in owners and classify(name) not in _SKIP_FAMILIES
    }
    last: dict[int, str] = {}
    for owner, parameter in owners.items():
        if classify(parameter) not in ("ffn", "expert_ffn"):
            continue
        layer = layer_index(parameter)
        if layer is not None:
            last[layer] = owner
    taps = {}
    for layer in sorted(last):
        owner = last[layer]
        if classify(owner) == "expert_ffn":
            owner = owner.rsplit(".experts", 1)[0]
        taps[owner] = modules[owner]
    return measured, taps


def rmt_modules(model: Any) -> dict[str, Any]:
    """Modules whose outputs the RMT probe measures: owners of weight matrices, by name."""
    return _tracked(model)[0]


def branch_taps(model: Any) -> dict[str, Any]:
    """The FFN branch output of every block: the owner of its last FFN matrix (MoE: the MoE block)."""
    return _tracked(model)[1]


def _first_tensor(output: Any, torch: Any) -> Any:
    if isinstance(output, torch.Tensor):
        return output
    values = output.values() if isinstance(output, Mapping) else output
    if isinstance(values, list | tuple) or hasattr(values, "__iter__"):
        for item in values:
            if isinstance(item, torch.Tensor):
                return item
    return None


@attrs.define
class _Recorder:
    queue: GramQueue
    batch_rows: int = 0
    energy: dict[str, list[float]] = attrs.field(factory=dict)
    seconds: float = 0.0
    """Wall time spent inside the hooks."""
    active: bool = False
    """Between ``begin_batch`` and ``end_batch``: hooks ignore any other forward pass."""
    error: Exception | None = None
    """The first error a hook hit; the hooks then stand down (see :func:`_timed`)."""

    def end_batch(self) -> None:
        """Close a batch: standardise its queued Grams. Like a hook, this never raises into the
        pass it closes (it keeps the error instead)."""
        self.active = False
        if self.error is not None:
            return
        try:
            self.queue.close_batch()
        except Exception as exc:
            self.error = exc


def _timed(recorder: _Recorder, hook: Any) -> Any:
    """``hook`` with its wall time added to ``recorder.seconds``.

    A hook never raises into the forward pass it watches (which may be the evaluation's scoring):
    its error is kept in ``recorder.error`` and raised by whoever owns the pass.
    """

    def timed(module: Any, inputs: Any, output: Any) -> Any:
        if not recorder.active or recorder.error is not None:
            return None
        start = time.perf_counter()
        try:
            return hook(module, inputs, output)
        except Exception as exc:
            recorder.error = exc
            return None
        finally:
            recorder.seconds += time.perf_counter() - start

    return timed


def _rmt_hook(recorder: _Recorder, name: str, matrix: Any | None, torch: Any) -> Any:
    """The hook measuring one module's output; ``matrix`` is ``A`` of a plain linear layer."""
    queue = recorder.queue

    def hook(_module: Any, inputs: Any, output: Any) -> None:
        tensor = _first_tensor(output, torch)
        if tensor is None or not tensor.is_floating_point():
            return
        if matrix is not None and isinstance(output, torch.Tensor):
            source = _first_tensor(inputs, torch)
            if (
                source is not None
                and source.is_floating_point()
                and source.shape[:-1] == output.shape[:-1]
                and (source.shape[-1], output.shape[-1]) == tuple(matrix.shape)
                and (matrix.shape[0] <= matrix.shape[1] or queue.shares_input(source))
            ):
                # float16 can overflow where the float32 input path cannot: check the output.
                if output.dtype == torch.float16 and not bool(torch.isfinite(output).all()):
                    queue.nonfinite.add(name)
                else:
                    queue.add_linear(name, matrix, source)
                return
        queue.add_output(name, tensor)

    return _timed(recorder, hook)


def _branch_hook(recorder: _Recorder, name: str, scale: float | None, torch: Any) -> Any:
    def hook(_module: Any, _inputs: Any, output: Any) -> Any:
        tensor = _first_tensor(output, torch)
        if tensor is None:
            return None
        if scale is not None:
            scaled = tensor * scale
            if isinstance(output, torch.Tensor):
                output = scaled
            elif isinstance(output, tuple):
                output = (scaled, *output[1:])
            tensor = scaled
        per_window = tensor.detach().float().reshape(recorder.batch_rows, -1).pow(2).mean(dim=1)
        recorder.energy.setdefault(name, []).extend(per_window.cpu().tolist())
        return output if scale is not None else None

    return _timed(recorder, hook)


def _batches(calibration: Any, device: Any, torch: Any) -> list[Any]:
    """Calibration windows regrouped into batches of up to ``_BATCH`` equal-length windows."""
    rows = []
    for batch in calibration:
        ids = batch if batch.ndim == 2 else batch[None, :]
        rows.extend(ids.unbind(0))
    batches: list[Any] = []
    by_length: dict[int, list[Any]] = {}
    for row in rows:
        by_length.setdefault(int(row.shape[0]), []).append(row)
    for group in by_length.values():
        for start in range(0, len(group), _BATCH):
            batches.append(torch.stack(group[start : start + _BATCH]).to(device))
    return batches


def _is_causal_lm(model: Any) -> bool:
    can_generate = getattr(model, "can_generate", None)
    try:
        return bool(can_generate()) if callable(can_generate) else False
    except Exception:  # pragma: no cover - exotic remote code
        return False


class _Pass:
    """The hooks of one pass over the calibration windows of one model, and what they recorded."""

    def __init__(
        self, model: Any, *, seed: int, scales: Mapping[str, float] | None, want_rmt: bool
    ) -> None:
        torch = require("torch", purpose="activation probes")
        self.recorder = _Recorder(GramQueue(seed=seed))
        self.causal = _is_causal_lm(model)
        self.nll: list[float] = []
        self.tokens: list[int] = []
        self.windows = 0
        self._handles = []
        measured, taps = _tracked(model)
        if want_rmt:
            for name, module in measured.items():
                hook = _rmt_hook(self.recorder, name, linear_map(module, torch), torch)
                self._handles.append(module.register_forward_hook(hook))
        for name, module in taps.items():
            scale = None if scales is None else scales.get(name)
            self._handles.append(
                module.register_forward_hook(_branch_hook(self.recorder, name, scale, torch))
            )

    def begin_batch(self, ids: Any) -> None:
        self.recorder.batch_rows = int(ids.shape[0])
        self.recorder.active = True
        self.windows += int(ids.shape[0])

    def end_batch(self, ids: Any, window_nll: Sequence[float] | None) -> None:
        """Record the batch's per-window mean next-token NLL (causal LMs only)."""
        self.recorder.end_batch()
        if self.causal and window_nll is not None and ids.shape[1] > 1:
            self.nll.extend(float(v) for v in window_nll)
            self.tokens.extend([int(ids.shape[1]) - 1] * int(ids.shape[0]))

    def close(self) -> None:
        """Remove the hooks (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def result(self) -> ActivationProbe:
        """The probe; its RMT ratios are solved when first read or by :meth:`ActivationProbe.solve`."""
        recorder = self.recorder
        usable_nll = bool(self.nll) and all(math.isfinite(v) for v in self.nll)
        return ActivationProbe(
            ratios=_Ratios(recorder.queue),
            branch_energy={name: tuple(v) for name, v in recorder.energy.items()},
            window_nll=tuple(self.nll) if usable_nll else None,
            window_tokens=tuple(self.tokens) if usable_nll else None,
            windows=self.windows,
        )


def _window_nll(logits: Any, ids: Any) -> list[float] | None:
    """Per-window mean next-token NLL exactly as the evaluation scores it (``None`` without
    logits or with 1-token windows)."""
    if logits is None or ids.shape[1] < 2:
        return None
    values: list[float] = window_nll(logits, ids).double().cpu().tolist()
    return values


def _run(
    mut: ModelUnderTest, *, seed: int, scales: Mapping[str, float] | None, want_rmt: bool
) -> ActivationProbe:
    torch = require("torch", purpose="activation probes")
    model = mut.model
    run = _Pass(model, seed=seed, scales=scales, want_rmt=want_rmt)
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            for ids in _batches(mut.calibration, device, torch):
                run.begin_batch(ids)
                if run.causal:
                    output = model(input_ids=ids, use_cache=False)
                    nll = _window_nll(getattr(output, "logits", None), ids)
                else:
                    model(input_ids=ids)
                    nll = None
                run.end_batch(ids, nll)
    finally:
        run.close()
    if run.recorder.error is not None:
        raise run.recorder.error
    return run.result()


class ActivationObserver:
    """The probe of one model, taken from the evaluation's own forward passes (no extra pass).

    ``invarlock evaluate`` scores the calibration windows anyway (they are its first preview
    windows). It calls :meth:`begin_batch` before and :meth:`end_batch` after every scoring batch
    and :meth:`finish` at the end. The observer hooks the model until it has seen batches equal to
    the probe's own calibration batches, in order; then it removes its hooks and caches the probe,
    so the RMT and variance guards find it ready. Any other batching (a different ``--batch``, a
    reordered plan) makes it step aside, and the guards run their own pass as before.
    """

    def __init__(self, mut: ModelUnderTest, *, seed: int) -> None:
        start = time.perf_counter()
        torch = require("torch", purpose="activation probes")
        self._torch = torch
        self._mut = weakref.ref(mut)
        self._seed = seed
        device = next(mut.model.parameters()).device
        self._expected = _batches(mut.calibration, device, torch)
        self._seen = 0
        self.finished = False
        self._pass: _Pass | None = (
            _Pass(mut.model, seed=seed, scales=None, want_rmt=True) if self._expected else None
        )
        self._hook_seconds = 0.0
        self._own_seconds = time.perf_counter() - start

    @property
    def seconds(self) -> float:
        """Wall time spent measuring so far: setting up, in the hooks, in the batch callbacks
        and finishing."""
        hooks = self._pass.recorder.seconds if self._pass is not None else self._hook_seconds
        return self._own_seconds + hooks

    @property
    def active(self) -> bool:
        """Whether the hooks are still installed (calibration batches still to come)."""
        return self._pass is not None and self._seen < len(self._expected)

    def _release(self) -> _Pass | None:
        """Remove the hooks and drop the pass (returned), keeping its hook time."""
        run, self._pass = self._pass, None
        if run is not None:
            run.close()
            self._hook_seconds = run.recorder.seconds
        return run

    def begin_batch(self, input_ids: Any) -> None:
        if not self.active:
            return
        start = time.perf_counter()
        assert self._pass is not None
        expected = self._expected[self._seen]
        if input_ids.shape != expected.shape or not self._torch.equal(
            input_ids, expected.to(input_ids.device)
        ):
            self._release()
        else:
            self._pass.begin_batch(input_ids)
        self._own_seconds += time.perf_counter() - start

    def end_batch(self, input_ids: Any, window_nll: Sequence[float] | None) -> None:
        if not self.active:
            return
        start = time.perf_counter()
        assert self._pass is not None
        self._pass.end_batch(input_ids, window_nll)
        self._seen += 1
        if self._seen == len(self._expected):
            self._pass.close()
        self._own_seconds += time.perf_counter() - start

    def finish(self) -> None:
        """Remove any hooks left; cache the probe if every calibration batch was observed."""
        start = time.perf_counter()
        self.finished = True
        run = self._release()
        mut = self._mut()
        if run is not None and mut is not None:
            complete = self._seen == len(self._expected) and run.recorder.error is None
            if complete:
                # The observer only saves a pass: if anything goes wrong, nothing is cached and
                # the guards measure on their own, where a failure is reported as theirs.
                with contextlib.suppress(Exception):
                    _CACHE.setdefault(mut, {})[self._seed] = run.result()
        self._own_seconds += time.perf_counter() - start


_CACHE: weakref.WeakKeyDictionary[ModelUnderTest, dict[int, ActivationProbe]] = (
    weakref.WeakKeyDictionary()
)


_OBSERVERS: weakref.WeakKeyDictionary[ModelUnderTest, dict[int, ActivationObserver]] = (
    weakref.WeakKeyDictionary()
)


def observe_activations(mut: ModelUnderTest, *, seed: int) -> ActivationObserver | None:
    """The observer that fills the probe cache of ``mut`` from the caller's forward passes.

    ``None`` when the probe is already cached; the same observer for every caller until it has
    finished (the RMT and variance guards share one).
    """
    if seed in _CACHE.get(mut, {}):
        return None
    per_model = _OBSERVERS.setdefault(mut, {})
    observer = per_model.get(seed)
    if observer is None or observer.finished:
        observer = per_model[seed] = ActivationObserver(mut, seed=seed)
    return observer


def probe_activations(
    mut: ModelUnderTest, *, seed: int, scales: Mapping[str, float] | None = None
) -> ActivationProbe:
    """The probe of ``mut`` (cached per model object and seed when ``scales`` is ``None``)."""
    if scales is not None:
        return _run(mut, seed=seed, scales=scales, want_rmt=False)
    per_model = _CACHE.setdefault(mut, {})
    if seed not in per_model:
        per_model[seed] = _run(mut, seed=seed, scales=None, want_rmt=True)
    return per_model[seed]
