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
per model. With ``scales`` the FFN branch outputs are multiplied by per-module factors during the
pass (the subject is never modified; the hooks are removed afterwards).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from typing import Any

import attrs

from invarlock_core.families import classify, layer_index
from invarlock_core.guarding import ModelUnderTest
from invarlock_core.optional_deps import require
from invarlock_guards.spectral_norm import KrylovSettings, top_singular_values

__all__ = ["ActivationProbe", "ModuleRatio", "branch_taps", "probe_activations", "rmt_modules"]

_SKIP_FAMILIES = ("embed", "norm")
_RMT_KRYLOV = KrylovSettings(tolerance=1e-3, max_iterations=32, block_size=16)
_BATCH = 8  # windows per forward pass; RMT ratios are measured per batch


@attrs.frozen
class ModuleRatio:
    """Token-weighted RMT ratio of one module's output."""

    family: str
    ratio: float
    tokens: int
    features: int


@attrs.frozen
class ActivationProbe:
    """What one pass over the calibration windows measured."""

    rmt: Mapping[str, ModuleRatio]
    branch_energy: Mapping[str, tuple[float, ...]]
    """FFN branch -> per-window ``mean(y²)``."""
    window_nll: tuple[float, ...] | None
    window_tokens: tuple[int, ...] | None
    nonfinite_outputs: tuple[str, ...]
    windows: int


def _owns_matrix(module: Any) -> bool:
    return any(p.ndim >= 2 for p in module.parameters(recurse=False))


def rmt_modules(model: Any) -> dict[str, Any]:
    """Modules whose outputs the RMT probe measures: owners of weight matrices, by name."""
    return {
        name: module
        for name, module in model.named_modules()
        if name and _owns_matrix(module) and classify(name) not in _SKIP_FAMILIES
    }


def branch_taps(model: Any) -> dict[str, Any]:
    """The FFN branch output of every block: the owner of its last FFN matrix (MoE: the MoE block)."""
    modules = dict(model.named_modules())
    last: dict[int, str] = {}
    for name, parameter in model.named_parameters():
        if parameter.ndim < 2 or classify(name) not in ("ffn", "expert_ffn"):
            continue
        layer = layer_index(name)
        if layer is not None:
            last[layer] = name.rsplit(".", 1)[0]
    taps = {}
    for layer in sorted(last):
        owner = last[layer]
        if classify(owner) == "expert_ffn":
            owner = owner.rsplit(".experts", 1)[0]
        taps[owner] = modules[owner]
    return taps


def _first_tensor(output: Any, torch: Any) -> Any:
    if isinstance(output, torch.Tensor):
        return output
    values = output.values() if isinstance(output, Mapping) else output
    if isinstance(values, list | tuple) or hasattr(values, "__iter__"):
        for item in values:
            if isinstance(item, torch.Tensor):
                return item
    return None


def _standardised_ratio(activation: Any, key: str, seed: int, torch: Any) -> tuple[float, int, int]:
    matrix = activation.detach().reshape(-1, activation.shape[-1]).float()
    rows, cols = matrix.shape
    centred = matrix - matrix.mean(dim=0, keepdim=True)
    std = centred.pow(2).mean(dim=0).sqrt()
    live = std > 1e-12 * std.max().clamp_min(1e-30)
    scaled = torch.where(live, centred / std.clamp_min(1e-30), torch.zeros_like(centred))
    sigma = top_singular_values([scaled], [key], seed=seed, settings=_RMT_KRYLOV)[0]
    return sigma / (math.sqrt(rows) + math.sqrt(cols)), rows, cols


@attrs.define
class _Recorder:
    seed: int
    batch_rows: int = 0
    ratios: dict[str, list[tuple[float, int, int]]] = attrs.field(factory=dict)
    energy: dict[str, list[float]] = attrs.field(factory=dict)
    nonfinite: set[str] = attrs.field(factory=set)


def _rmt_hook(recorder: _Recorder, name: str, torch: Any) -> Any:
    def hook(_module: Any, _inputs: Any, output: Any) -> None:
        tensor = _first_tensor(output, torch)
        if tensor is None or not tensor.is_floating_point():
            return
        if not bool(torch.isfinite(tensor).all()):
            recorder.nonfinite.add(name)
            return
        recorder.ratios.setdefault(name, []).append(
            _standardised_ratio(tensor, name, recorder.seed, torch)
        )

    return hook


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

    return hook


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


def _run(
    mut: ModelUnderTest, *, seed: int, scales: Mapping[str, float] | None, want_rmt: bool
) -> ActivationProbe:
    torch = require("torch", purpose="activation probes")
    model = mut.model
    recorder = _Recorder(seed=seed)
    handles = []
    if want_rmt:
        for name, module in rmt_modules(model).items():
            handles.append(module.register_forward_hook(_rmt_hook(recorder, name, torch)))
    for name, module in branch_taps(model).items():
        scale = None if scales is None else scales.get(name)
        handles.append(module.register_forward_hook(_branch_hook(recorder, name, scale, torch)))
    causal = _is_causal_lm(model)
    nll: list[float] = []
    tokens: list[int] = []
    device = next(model.parameters()).device
    windows = 0
    try:
        with torch.no_grad():
            for ids in _batches(mut.calibration, device, torch):
                recorder.batch_rows = int(ids.shape[0])
                windows += int(ids.shape[0])
                output = model(input_ids=ids)
                logits = getattr(output, "logits", None)
                if causal and logits is not None and ids.shape[1] > 1:
                    per_token = torch.nn.functional.cross_entropy(
                        logits[:, :-1].float().transpose(1, 2), ids[:, 1:], reduction="none"
                    )
                    nll.extend(per_token.mean(dim=1).cpu().tolist())
                    tokens.extend([int(ids.shape[1]) - 1] * int(ids.shape[0]))
    finally:
        for handle in handles:
            handle.remove()
    families = {name: classify(name) for name in recorder.ratios}
    rmt = {}
    for name, values in recorder.ratios.items():
        total = sum(rows for _r, rows, _c in values)
        rmt[name] = ModuleRatio(
            family=families[name],
            ratio=sum(r * rows for r, rows, _c in values) / total,
            tokens=total,
            features=values[0][2],
        )
    usable_nll = bool(nll) and all(math.isfinite(v) for v in nll)
    return ActivationProbe(
        rmt=rmt,
        branch_energy={name: tuple(v) for name, v in recorder.energy.items()},
        window_nll=tuple(nll) if usable_nll else None,
        window_tokens=tuple(tokens) if usable_nll else None,
        nonfinite_outputs=tuple(sorted(recorder.nonfinite)),
        windows=windows,
    )


_CACHE: weakref.WeakKeyDictionary[ModelUnderTest, dict[int, ActivationProbe]] = (
    weakref.WeakKeyDictionary()
)


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
