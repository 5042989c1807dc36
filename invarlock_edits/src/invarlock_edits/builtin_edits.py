"""The four built-in validation-subject edits: RTN, FP8, magnitude pruning and low-rank SVD.

Each writes a dense floating-point Hugging Face checkpoint (artifact class
``validation_subject_checkpoint``): a simulation of the edit's numerical effect, not packed
quantized storage, a sparse runtime or factorized modules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from invarlock_core.errors import UsageError
from invarlock_edits.architecture import input_axis
from invarlock_edits.checkpoint import Checkpoint
from invarlock_edits.kernels import (
    FP8_FORMATS,
    fp8_round_trip,
    lowrank_approximation,
    magnitude_prune,
    rtn_quantize,
    tensor_generator,
)
from invarlock_edits.params import ParamSpec
from invarlock_edits.plan import EditPlan, map_tensors
from invarlock_edits.streaming_edit import StreamingEdit

if TYPE_CHECKING:
    import torch

__all__ = [
    "BUILTIN_EDITS",
    "FP8_QUANT",
    "LOWRANK_SVD",
    "MAGNITUDE_PRUNE",
    "QUANT_RTN",
    "scope_param",
]


def scope_param(default: str = "ffn") -> ParamSpec:
    """The trailing scope parameter every tensor edit takes."""
    return ParamSpec("scope", "scope", default, "which weight matrices to edit")


def _plan_rtn(checkpoint: Checkpoint, params: Mapping[str, Any], seed: int) -> EditPlan:
    model_type = checkpoint.model_type
    axes = {info.name: input_axis(info, model_type) for info in checkpoint}

    def quantize(name: str, tensor: torch.Tensor) -> torch.Tensor:
        return rtn_quantize(
            tensor,
            bits=params["bits"],
            group_size=params["group_size"],
            symmetric=params["symmetric"],
            axis=axes[name],
            inplace=True,
        )

    return map_tensors(checkpoint, params["scope"].select(checkpoint), quantize)


def _plan_fp8(checkpoint: Checkpoint, params: Mapping[str, Any], seed: int) -> EditPlan:
    def round_trip(name: str, tensor: torch.Tensor) -> torch.Tensor:
        return fp8_round_trip(
            tensor, fmt=params["format"], per_tensor_scale=params["per_tensor_scale"], inplace=True
        )

    return map_tensors(checkpoint, params["scope"].select(checkpoint), round_trip)


def _plan_prune(checkpoint: Checkpoint, params: Mapping[str, Any], seed: int) -> EditPlan:
    def prune(name: str, tensor: torch.Tensor) -> torch.Tensor:
        return magnitude_prune(tensor, level=params["prune_level"], inplace=True)

    return map_tensors(checkpoint, params["scope"].select(checkpoint), prune)


def _plan_lowrank(checkpoint: Checkpoint, params: Mapping[str, Any], seed: int) -> EditPlan:
    def approximate(name: str, tensor: torch.Tensor) -> torch.Tensor:
        return lowrank_approximation(
            tensor,
            rank=params["rank"],
            generator=tensor_generator(seed, name),
            power_iters=params["power_iters"],
            oversample=params["oversample"],
            inplace=True,
        )

    targets = params["scope"].select(checkpoint)
    skipped = [info.name for info in targets if min(info.shape[-2:]) <= params["rank"]]
    if targets and len(skipped) == len(targets):
        # A rank at or above every matrix's size keeps every matrix exactly: refuse a silent no-op.
        largest = max(min(info.shape[-2:]) for info in targets)
        raise UsageError(
            f"lowrank_svd rank {params['rank']} is not below the size of any selected matrix "
            f"(the largest is {largest}): the edit would change nothing; choose a rank below {largest}"
        )
    return map_tensors(checkpoint, targets, approximate, details={"already_low_rank": skipped})


QUANT_RTN = StreamingEdit(
    name="quant_rtn",
    summary="round-to-nearest quantize/dequantize with per-row groups (dense float weights)",
    artifact_class="validation_subject_checkpoint",
    specs=(
        ParamSpec("bits", "int", 8, "bits per weight", minimum=2, maximum=8),
        ParamSpec(
            "group_size", "int", 128, "inputs per scale group; 0 = one group per row", minimum=0
        ),
        ParamSpec("symmetric", "bool", True, "symmetric range (false: min/max with a zero point)"),
        scope_param(),
    ),
    planner=_plan_rtn,
    storage_format="dense_dequantized_safetensors",
    description=(
        "Each weight row is split into groups of group_size inputs; each group gets one scale "
        "(max|x|/(2^(bits-1)-1), symmetric) and is rounded to the nearest level, clamped and "
        "dequantized. Saved as floating-point weights in the original dtype."
    ),
    supports_clean=True,
)

FP8_QUANT = StreamingEdit(
    name="fp8_quant",
    summary="round trip through FP8 (e4m3fn or e5m2), saved as the original float dtype",
    artifact_class="validation_subject_checkpoint",
    specs=(
        ParamSpec("format", "choice", "e4m3fn", "FP8 format", choices=FP8_FORMATS),
        ParamSpec("per_tensor_scale", "bool", False, "scale max|w| to the FP8 maximum first"),
        scope_param(),
    ),
    planner=_plan_fp8,
    storage_format="dense_dequantized_safetensors",
    description=(
        "Every selected weight is cast to the FP8 format (saturating at its largest finite "
        "value) and back to its stored dtype."
    ),
    supports_clean=True,
)

MAGNITUDE_PRUNE = StreamingEdit(
    name="magnitude_prune",
    summary="zero the smallest-magnitude weights of each tensor (exact sparsity, dense storage)",
    artifact_class="validation_subject_checkpoint",
    specs=(
        ParamSpec(
            "prune_level",
            "float",
            0.5,
            "fraction of each tensor to zero",
            minimum=0.0,
            maximum=1.0,
            exclusive_minimum=True,
        ),
        scope_param(),
    ),
    planner=_plan_prune,
    storage_format="dense_pruned_safetensors",
    description=(
        "Per tensor, exactly round(prune_level * numel) weights with the smallest |w| are set "
        "to zero (ties broken by position). Zeros are written into dense tensors."
    ),
    supports_clean=True,
)

LOWRANK_SVD = StreamingEdit(
    name="lowrank_svd",
    summary="replace each weight matrix by its rank-r randomized-SVD approximation (dense)",
    artifact_class="validation_subject_checkpoint",
    specs=(
        ParamSpec("rank", "int", 32, "target rank r", minimum=1),
        ParamSpec(
            "power_iters", "int", 2, "power iterations of the randomized SVD", minimum=0, maximum=10
        ),
        ParamSpec("oversample", "int", 8, "extra random probes of the randomized SVD", minimum=0),
        scope_param(),
    ),
    planner=_plan_lowrank,
    storage_format="dense_lowrank_safetensors",
    description=(
        "Each selected matrix (each expert of a fused 3-D expert tensor) is replaced by "
        "U_r S_r V_r^T from a seeded randomized SVD; matrices whose smaller side is <= r are "
        "left unchanged. Dense tensors are written, not factorized modules."
    ),
    supports_clean=True,
)

BUILTIN_EDITS = (QUANT_RTN, FP8_QUANT, MAGNITUDE_PRUNE, LOWRANK_SVD)
