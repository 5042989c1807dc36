"""Error injections: deliberately broken or degraded checkpoints that a guard must catch.

Each is a :class:`StreamingEdit` of artifact class ``fault_injection_fixture`` whose metadata
names the tensors it changes (and nothing else changes: the coverage is measured) and which guard
is expected to detect it. Random choices (positions, noise) come from generators seeded by
``(seed, tensor name)``, so the same seed gives byte-identical fixtures.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from invarlock_core.errors import UsageError
from invarlock_core.families import classify, layer_index
from invarlock_edits.architecture import (
    ffn_output_projections,
    input_axis,
    output_head_name,
    ties_embeddings,
    token_embedding,
)
from invarlock_edits.checkpoint import LAYER_COUNT_KEYS, Checkpoint, TensorInfo
from invarlock_edits.kernels import rank_one_collapse, rtn_quantize, tensor_generator
from invarlock_edits.metadata import Detection
from invarlock_edits.params import ParamSpec
from invarlock_edits.plan import AddedTensor, EditPlan, TensorChange, map_tensors
from invarlock_edits.scopes import is_weight_matrix, ordered
from invarlock_edits.streaming_edit import StreamingEdit

if TYPE_CHECKING:
    import torch

__all__ = ["INJECTIONS"]

_INVARIANTS = Detection("must_detect", ("invariants",))
_WEIGHT_DAMAGE = Detection("must_detect", ("spectral", "primary_metric"))


def _weights(checkpoint: Checkpoint, families: set[str] | None = None) -> list[TensorInfo]:
    return ordered(
        info
        for info in checkpoint
        if is_weight_matrix(info) and (families is None or classify(info.name) in families)
    )


def _last_layers(checkpoint: Checkpoint, count: int) -> set[int]:
    total = checkpoint.num_layers()
    if total is None:
        indices = {i for info in checkpoint if (i := layer_index(info.name)) is not None}
        total = max(indices) + 1 if indices else 0
    return set(range(max(0, total - count), total))


def _require(targets: list[TensorInfo], what: str, checkpoint: Checkpoint) -> list[TensorInfo]:
    if not targets:
        raise UsageError(f"{checkpoint.path} has no {what} to inject into")
    return targets


def _positions(info: TensorInfo, count: int, seed: int) -> list[int]:
    """``count`` distinct flat positions: element 0 first, then seeded draws."""
    import torch

    generator = tensor_generator(seed, info.name)
    chosen = [0]
    while len(chosen) < min(count, info.numel):
        draw = int(torch.randint(info.numel, (1,), generator=generator))
        if draw not in chosen:
            chosen.append(draw)
    return chosen


def _unravel(flat: int, shape: tuple[int, ...]) -> list[int]:
    index = []
    for dim in reversed(shape):
        index.append(flat % dim)
        flat //= dim
    return index[::-1]


def _set_values(
    checkpoint: Checkpoint, target: TensorInfo, count: int, seed: int, value: float
) -> EditPlan:
    positions = _positions(target, count, seed)

    def poison(name: str, tensor: torch.Tensor) -> torch.Tensor:
        import torch

        tensor.view(-1)[torch.tensor(positions)] = value
        return tensor

    details = {"tensor": target.name, "positions": [_unravel(p, target.shape) for p in positions]}
    return map_tensors(checkpoint, [target], poison, details=details)


def _plan_nan(checkpoint: Checkpoint, params: Mapping[str, Any], seed: int) -> EditPlan:
    weights = _weights(checkpoint)
    block0 = [info for info in weights if layer_index(info.name) == 0] or weights
    target = _require(block0, "weight matrix", checkpoint)[0]
    return _set_values(checkpoint, target, params["count"], seed, float("nan"))


def _plan_inf(checkpoint: Checkpoint, params: Mapping[str, Any], seed: int) -> EditPlan:
    target = _require(_weights(checkpoint, {"attn"}), "attention weight", checkpoint)[0]
    return _set_values(checkpoint, target, params["count"], seed, float("inf"))


def _scale_by(factor: float) -> Any:
    def scale(name: str, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.mul_(factor)

    return scale


def _plan_extreme_quant(checkpoint: Checkpoint, params: Mapping[str, Any], seed: int) -> EditPlan:
    model_type = checkpoint.model_type
    bits = params["bits"]

    def quantize(name: str, tensor: torch.Tensor) -> torch.Tensor:
        axis = input_axis(checkpoint.tensors[name], model_type)
        return rtn_quantize(
            tensor, bits=bits, group_size=0, symmetric=False, axis=axis, inplace=True
        )

    targets = _require(_weights(checkpoint), "weight matrix", checkpoint)
    return map_tensors(checkpoint, targets, quantize, details={"levels_per_row": 2**bits})


def _plan_scale_explosion(checkpoint: Checkpoint, params: Mapping[str, Any], seed: int) -> EditPlan:
    target = _require(_weights(checkpoint, {"ffn", "expert_ffn"}), "MLP weight", checkpoint)[0]
    factor = params["factor"]
    return map_tensors(
        checkpoint, [target], _scale_by(factor), details={"tensor": target.name, "factor": factor}
    )


def _plan_tying_break(checkpoint: Checkpoint, params: Mapping[str, Any], seed: int) -> EditPlan:
    embedding = token_embedding(checkpoint)
    if embedding is None:
        raise UsageError(
            f"{checkpoint.path} has no token embedding, so there is no weight tie to break"
        )
    head = output_head_name(checkpoint)
    tied_before = ties_embeddings(checkpoint.config)
    updates = {"tie_word_embeddings": not tied_before}
    details = {
        "embedding": embedding.name,
        "head": head,
        "tied_before": tied_before,
        "tied_after": not tied_before,
    }
    if tied_before:
        if head in checkpoint:  # stored twice already: untying is a config change only
            return EditPlan(config_updates=updates, details=details)
        added = [
            AddedTensor(
                head,
                embedding.dtype,
                embedding.shape,
                lambda c: c.load(embedding.name),
                embedding.name,
            )
        ]
        bias = "cls.predictions.bias"
        if head == "cls.predictions.decoder.weight" and bias in checkpoint:
            info = checkpoint.tensors[bias]
            added.append(
                AddedTensor(
                    "cls.predictions.decoder.bias",
                    info.dtype,
                    info.shape,
                    lambda c: c.load(bias),
                    bias,
                )
            )
        return EditPlan(added=tuple(added), config_updates=updates, details=details)
    if head not in checkpoint:
        raise UsageError(f"{checkpoint.path} is untied but stores no {head}")
    return EditPlan(removed=frozenset({head}), config_updates=updates, details=details)


def _grow_rows(extra: int, seed: int) -> Any:
    def grow(name: str, tensor: torch.Tensor) -> torch.Tensor:
        import torch

        values = tensor.float()
        generator = tensor_generator(seed, name)
        mean = values.mean(dim=0, keepdim=True)
        std = values.std(dim=0, keepdim=True) if values.shape[0] > 1 else torch.ones_like(mean)
        noise = torch.randn((extra, *values.shape[1:]), generator=generator).to(values.device)
        rows = (mean + std * noise).to(tensor.dtype)
        return torch.cat([tensor, rows], dim=0)

    return grow


def _plan_shape_mismatch(checkpoint: Checkpoint, params: Mapping[str, Any], seed: int) -> EditPlan:
    vocab = checkpoint.config.get("vocab_size")
    embedding = token_embedding(checkpoint)
    if not isinstance(vocab, int) or embedding is None:
        raise UsageError(f"{checkpoint.path} declares no vocab_size or token embedding to resize")
    extra = params["extra_rows"]
    targets = [
        info
        for info in checkpoint
        if info.shape
        and info.shape[0] == vocab
        and info.dtype in {"F64", "F32", "F16", "BF16"}
        and "position" not in info.name
        and classify(info.name) in {"embed", "other"}
    ]
    grow = _grow_rows(extra, seed)
    base = map_tensors(checkpoint, targets, grow)
    changes = {
        name: TensorChange(change.fn, (vocab + extra, *checkpoint.tensors[name].shape[1:]))
        for name, change in base.changes.items()
    }
    return EditPlan(
        changes=changes,
        tied=base.tied,
        config_updates={"vocab_size": vocab + extra},
        details={"vocab_before": vocab, "vocab_after": vocab + extra, "tensors": sorted(changes)},
    )


def _plan_missing_tensors(checkpoint: Checkpoint, params: Mapping[str, Any], seed: int) -> EditPlan:
    total = checkpoint.num_layers()
    drop = params["blocks"]
    if total is None:
        raise UsageError(
            f"{checkpoint.path}: the config declares no layer count ({', '.join(LAYER_COUNT_KEYS)})"
        )
    if drop >= total:
        raise UsageError(
            f"missing_tensors: cannot drop {drop} of {total} blocks (at least one must remain)"
        )
    keep = total - drop
    removed = frozenset(
        info.name for info in checkpoint if (i := layer_index(info.name)) is not None and i >= keep
    )
    updates: dict[str, Any] = {}
    for key, value in checkpoint.config.items():
        if key in LAYER_COUNT_KEYS and value == total:
            updates[key] = keep
        elif isinstance(value, list) and len(value) == total:
            updates[key] = value[:keep]
    return EditPlan(
        removed=removed,
        config_updates=updates,
        details={
            "layers_before": total,
            "layers_after": keep,
            "dropped_blocks": list(range(keep, total)),
        },
    )


def _plan_rank_collapse(checkpoint: Checkpoint, params: Mapping[str, Any], seed: int) -> EditPlan:
    targets = _require(_weights(checkpoint, {"attn"}), "attention weight", checkpoint)[
        : params["count"]
    ]

    def collapse(name: str, tensor: torch.Tensor) -> torch.Tensor:
        return rank_one_collapse(tensor, generator=tensor_generator(seed, name), inplace=True)

    return map_tensors(
        checkpoint, targets, collapse, details={"tensors": [t.name for t in targets]}
    )


def _plan_norm_collapse(checkpoint: Checkpoint, params: Mapping[str, Any], seed: int) -> EditPlan:
    targets = _require(_weights(checkpoint, {"attn"}), "attention weight", checkpoint)[
        : params["count"]
    ]

    def zero(name: str, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.zero_()

    return map_tensors(checkpoint, targets, zero, details={"tensors": [t.name for t in targets]})


def _plan_rmt_norm_noise(checkpoint: Checkpoint, params: Mapping[str, Any], seed: int) -> EditPlan:
    layers = _last_layers(checkpoint, params["layers"])
    targets = [
        info
        for info in checkpoint
        if classify(info.name) == "norm"
        and info.name.endswith("weight")
        and info.ndim == 1
        and layer_index(info.name) in layers
    ]
    targets = _require(ordered(targets), "norm weight in the last layers", checkpoint)
    sigma = params["sigma"]

    def perturb(name: str, tensor: torch.Tensor) -> torch.Tensor:
        import torch

        noise = torch.randn(tensor.shape, generator=tensor_generator(seed, name))
        factor = (1.0 + sigma * noise).clamp_(0.5, 1.5).to(tensor.device)
        return tensor.copy_(tensor.float() * factor)

    return map_tensors(
        checkpoint,
        targets,
        perturb,
        details={"layers": sorted(layers), "tensors": [t.name for t in targets]},
    )


def _plan_spectral_moderate_scale(
    checkpoint: Checkpoint, params: Mapping[str, Any], seed: int
) -> EditPlan:
    layers = _last_layers(checkpoint, params["layers"])
    attention = [
        info for info in _weights(checkpoint, {"attn"}) if layer_index(info.name) in layers
    ]
    targets = _require(attention, "attention weight in the last layers", checkpoint)[
        : params["count"]
    ]
    factor = params["factor"]
    details = {"factor": factor, "layers": sorted(layers), "tensors": [t.name for t in targets]}
    return map_tensors(checkpoint, targets, _scale_by(factor), details=details)


def _plan_ve_mlp_scale_skew(
    checkpoint: Checkpoint, params: Mapping[str, Any], seed: int
) -> EditPlan:
    projections = ffn_output_projections(checkpoint)
    indices = sorted({i for info in projections if (i := layer_index(info.name)) is not None})
    if not indices:
        raise UsageError(f"{checkpoint.path} has no MLP output projection to rescale")
    wanted = params["layer"]
    layer = indices[wanted] if -len(indices) <= wanted < len(indices) else None
    if layer is None:
        raise UsageError(
            f"ve_mlp_scale_skew: layer {wanted} is out of range (valid {-len(indices)}..{len(indices) - 1})"
        )
    target = next(info for info in projections if layer_index(info.name) == layer)
    factor = params["factor"]
    details = {"tensor": target.name, "layer": layer, "factor": factor}
    return map_tensors(checkpoint, [target], _scale_by(factor), details=details)


def _count(default: int, help_text: str) -> ParamSpec:
    return ParamSpec("count", "int", default, help_text, minimum=1)


def _injection(
    name: str,
    summary: str,
    description: str,
    specs: tuple[ParamSpec, ...],
    planner: Any,
    detection: Detection,
) -> StreamingEdit:
    return StreamingEdit(
        name=name,
        summary=summary,
        artifact_class="fault_injection_fixture",
        specs=specs,
        planner=planner,
        storage_format="dense_safetensors",
        description=description,
        detection=detection,
    )


INJECTIONS = (
    _injection(
        "nan_injection",
        "NaN in the first weight matrix of block 0",
        "Sets element [0, 0] (and count-1 more seeded positions) of the first weight matrix of "
        "block 0 to NaN.",
        (_count(1, "elements set to NaN"),),
        _plan_nan,
        _INVARIANTS,
    ),
    _injection(
        "inf_injection",
        "+Inf in the first attention weight",
        "Sets element [0, 0] (and count-1 more seeded positions) of the first attention weight "
        "matrix to +Inf.",
        (_count(1, "elements set to +Inf"),),
        _plan_inf,
        _INVARIANTS,
    ),
    _injection(
        "extreme_quant",
        "every weight matrix quantized to 4 levels per row",
        "Every weight matrix (embeddings and head included; a tied pair once) is rounded to "
        "2^bits evenly spaced levels between each row's minimum and maximum.",
        (ParamSpec("bits", "int", 2, "levels per row = 2^bits", minimum=1, maximum=4),),
        _plan_extreme_quant,
        _WEIGHT_DAMAGE,
    ),
    _injection(
        "scale_explosion",
        "x100 on the first MLP weight",
        "Multiplies the first MLP (or expert) weight matrix of the model by factor.",
        (ParamSpec("factor", "float", 100.0, "multiplier", minimum=0.0, exclusive_minimum=True),),
        _plan_scale_explosion,
        _WEIGHT_DAMAGE,
    ),
    _injection(
        "weight_tying_break",
        "flip tied/untied input embedding and output head",
        "A tied model gets a stored output head (a copy of the embedding) and "
        "tie_word_embeddings=false; an untied model loses its head and gets "
        "tie_word_embeddings=true.",
        (),
        _plan_tying_break,
        _INVARIANTS,
    ),
    _injection(
        "shape_mismatch",
        "token embeddings (and head, output bias) resized by +8 rows",
        "Appends extra_rows seeded rows (per-column mean and std of the existing rows) to every "
        "vocabulary-sized tensor and raises config vocab_size to match.",
        (ParamSpec("extra_rows", "int", 8, "rows added to the vocabulary", minimum=1),),
        _plan_shape_mismatch,
        _INVARIANTS,
    ),
    _injection(
        "missing_tensors",
        "last block dropped, config fixed to match",
        "Removes every tensor of the last `blocks` transformer blocks and lowers the config's "
        "layer count (and per-layer lists such as layer_types) to match.",
        (ParamSpec("blocks", "int", 1, "blocks to drop from the end", minimum=1),),
        _plan_missing_tensors,
        _INVARIANTS,
    ),
    _injection(
        "rank_collapse",
        "up to 8 attention weights replaced by rank-1 matrices",
        "The first count attention weight matrices become their leading rank-1 term, rescaled "
        "to the original Frobenius norm.",
        (_count(8, "attention matrices to collapse"),),
        _plan_rank_collapse,
        _WEIGHT_DAMAGE,
    ),
    _injection(
        "norm_collapse",
        "up to 32 attention/projection matrices zeroed",
        "The first count attention weight matrices (query/key/value/output projections) are set "
        "to zero.",
        (_count(32, "attention matrices to zero"),),
        _plan_norm_collapse,
        _WEIGHT_DAMAGE,
    ),
    _injection(
        "rmt_norm_noise",
        "norm weights of the last 4 blocks x clamp(1 + 0.05 N(0,1), 0.5, 1.5)",
        "Multiplies every norm weight in the last `layers` blocks elementwise by "
        "clamp(1 + sigma * N(0, 1), 0.5, 1.5) with seeded noise.",
        (
            ParamSpec(
                "sigma",
                "float",
                0.05,
                "noise standard deviation",
                minimum=0.0,
                exclusive_minimum=True,
            ),
            ParamSpec("layers", "int", 4, "how many final blocks", minimum=1),
        ),
        _plan_rmt_norm_noise,
        Detection("informational", ("rmt",), probe="rmt_probe.json"),
    ),
    _injection(
        "spectral_moderate_scale",
        "x3 on up to 8 attention weights of the last 4 blocks",
        "Multiplies the first count attention weight matrices in the last `layers` blocks by factor.",
        (
            ParamSpec("factor", "float", 3.0, "multiplier", minimum=0.0, exclusive_minimum=True),
            _count(8, "attention matrices to scale"),
            ParamSpec("layers", "int", 4, "how many final blocks", minimum=1),
        ),
        _plan_spectral_moderate_scale,
        Detection("informational", ("spectral",)),
    ),
    _injection(
        "ve_mlp_scale_skew",
        "x0.90 on one MLP output projection",
        "Multiplies one MLP output projection (down_proj / c_proj / output.dense / expert w2) in "
        "block `layer` (negative counts from the end) by factor.",
        (
            ParamSpec("factor", "float", 0.9, "multiplier", minimum=0.0, exclusive_minimum=True),
            ParamSpec("layer", "int", -1, "block index; -1 = last"),
        ),
        _plan_ve_mlp_scale_skew,
        Detection("informational", ("variance",), probe="ve_probe.json"),
    ),
)
