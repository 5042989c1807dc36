"""Numeric kernels of the built-in edits, one weight tensor at a time.

Every kernel takes a tensor in its stored dtype, computes in float32 in bounded row chunks (so
the temporary memory of an edit is a few tens of megabytes whatever the tensor's size) and writes
the result back in the stored dtype. ``inplace=True`` reuses the input's storage, which is how the
edit engine calls them: a loaded tensor is private to the engine, so an edit never holds two
copies of a large matrix.

3-D tensors (fused MoE experts, ``[experts, out, in]``) are treated as a batch of matrices whose
last axis is the input axis; ``axis=0`` handles GPT-2's transposed ``Conv1D`` weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = [
    "FP8_FORMATS",
    "fp8_round_trip",
    "lowrank_approximation",
    "magnitude_prune",
    "rank_one_collapse",
    "rtn_quantize",
    "tensor_generator",
]

FP8_FORMATS = ("e4m3fn", "e5m2")
_CHUNK_ELEMENTS = 1 << 20
"""Rows are processed in chunks of about 1 Mi elements (4 MiB of float32)."""


def tensor_generator(seed: int, name: str, device: str = "cpu") -> torch.Generator:
    """A generator seeded by ``(seed, tensor name)``: results do not depend on processing order."""
    import torch

    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _rows(tensor: torch.Tensor, axis: int) -> torch.Tensor:
    """A 2-D ``[rows, inputs]`` view of ``tensor`` whose last axis is its input axis."""
    moved = tensor.movedim(axis, -1) if axis not in (-1, tensor.ndim - 1) else tensor
    if moved.is_contiguous():
        return moved.reshape(-1, moved.shape[-1])
    if moved.ndim != 2:
        raise ValueError("a transposed input axis is only supported for 2-D weights")
    return moved


def _row_chunks(rows: torch.Tensor) -> Iterator[torch.Tensor]:
    step = max(1, _CHUNK_ELEMENTS // max(1, rows.shape[1]))
    for start in range(0, rows.shape[0], step):
        yield rows[start : start + step]


def _target(tensor: torch.Tensor, inplace: bool) -> torch.Tensor:
    return tensor if inplace else tensor.clone()


def rtn_quantize(
    tensor: torch.Tensor,
    *,
    bits: int,
    group_size: int,
    symmetric: bool = True,
    axis: int = -1,
    inplace: bool = False,
) -> torch.Tensor:
    """Round-to-nearest quantize/dequantize with per-row groups of ``group_size`` inputs.

    Symmetric: ``scale = max|x| / (2^(bits-1) - 1)`` (at least 1e-10), ``q = clamp(round(x/scale),
    -qmax, qmax)``. Asymmetric: ``2^bits`` levels from each group's minimum to its maximum,
    ``scale = (max - min) / (2^bits - 1)``.
    ``group_size <= 0`` (or at least the row length) gives one group per row. The dequantized
    value is within half a quantization step of the input.
    """
    import torch

    result = _target(tensor, inplace)
    rows = _rows(result, axis)
    cols = rows.shape[1]
    group = cols if group_size <= 0 or group_size >= cols else group_size
    pad = -cols % group
    for chunk in _row_chunks(rows):
        # float32, contiguous and unpadded chunks are quantized in place: no temporary copies.
        direct = chunk.dtype == torch.float32 and chunk.is_contiguous() and not pad
        values = chunk if direct else chunk.float()
        if pad:  # repeat the last input so that padding never widens a group's range
            values = torch.cat([values, values[:, -1:].expand(-1, pad)], dim=1)
        grouped = values.view(values.shape[0], -1, group)
        low, high = torch.aminmax(grouped, dim=-1, keepdim=True)
        if symmetric:
            qmax = float(2 ** (bits - 1) - 1)
            scale = torch.maximum(high, low.neg_()).div_(qmax).clamp_(min=1e-10)
            grouped.div_(scale).round_().clamp_(-qmax, qmax).mul_(scale)
        else:
            levels = float(2**bits - 1)
            scale = high.sub_(low).div_(levels).clamp_(min=1e-10)
            grouped.sub_(low).div_(scale).round_().clamp_(0.0, levels).mul_(scale).add_(low)
        if not direct:
            chunk.copy_(values[:, :cols])
    return result


def fp8_round_trip(
    tensor: torch.Tensor, *, fmt: str, per_tensor_scale: bool = False, inplace: bool = False
) -> torch.Tensor:
    """Cast through FP8 (``e4m3fn`` or ``e5m2``) and back, saturating at the format's maximum.

    ``per_tensor_scale`` first scales the tensor so that its largest magnitude maps to the FP8
    maximum (and scales back afterwards), which keeps small weights out of the subnormal range.
    """
    import torch

    target = {"e4m3fn": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}[fmt]
    fmax = float(torch.finfo(target).max)
    scale = 1.0
    if per_tensor_scale:
        peak = float(tensor.detach().abs().amax()) if tensor.numel() else 0.0
        scale = peak / fmax if peak > 0 else 1.0
    result = _target(tensor, inplace)
    for chunk in _row_chunks(_rows(result, -1)):
        direct = chunk.dtype == torch.float32
        values = chunk if direct else chunk.float()
        if scale != 1.0:
            values.div_(scale)
        values.copy_(values.clamp_(-fmax, fmax).to(target))
        if scale != 1.0:
            values.mul_(scale)
        if not direct:
            chunk.copy_(values)
    return result


def magnitude_prune(tensor: torch.Tensor, *, level: float, inplace: bool = False) -> torch.Tensor:
    """Zero exactly ``round(level * numel)`` smallest-magnitude elements of the whole tensor.

    The threshold is the k-th smallest magnitude; ties at the threshold are broken by position,
    so the sparsity is exact (elements that were already zero count towards it).
    """
    import torch

    result = _target(tensor, inplace)
    total = result.numel()
    k = min(total, round(level * total))
    if k == 0:
        return result
    flat = result.view(-1) if result.is_contiguous() else None
    if flat is None:  # pragma: no cover - loaded tensors are contiguous
        result = result.contiguous()
        flat = result.view(-1)
    magnitude = flat.detach().abs().float()
    if k == total:
        flat.zero_()
        return result
    if magnitude.device.type == "cpu":  # numpy's introselect is far faster than torch.kthvalue
        import numpy as np

        threshold = magnitude.new_tensor(float(np.partition(magnitude.numpy(), k - 1)[k - 1]))
    else:
        threshold = magnitude.kthvalue(k).values
    below = magnitude < threshold
    flat.masked_fill_(below, 0)
    missing = k - int(below.sum())
    del below
    if missing > 0:
        ties = torch.nonzero(magnitude == threshold).squeeze(1)[:missing]
        flat.index_fill_(0, ties, 0)
    return result


def _matrices(tensor: torch.Tensor) -> torch.Tensor:
    """``[batch, rows, cols]`` view (rank is the same whichever axis is the input axis)."""
    return tensor.reshape(-1, tensor.shape[-2], tensor.shape[-1])


def _orthonormal(matrix: torch.Tensor) -> torch.Tensor:
    import torch

    q: torch.Tensor = torch.linalg.qr(matrix, mode="reduced")[0]
    return q


def _randomized_svd(
    matrix: torch.Tensor,
    rank: int,
    *,
    power_iters: int,
    oversample: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Halko-Martinsson-Tropp randomized SVD of a float32 matrix, truncated to ``rank``."""
    import torch

    rows, cols = matrix.shape
    width = min(rank + oversample, rows, cols)
    probe = torch.randn(cols, width, generator=generator, dtype=torch.float32).to(matrix.device)
    basis = _orthonormal(matrix @ probe)
    for _ in range(power_iters):
        basis = _orthonormal(matrix @ _orthonormal(matrix.T @ basis))
    small = basis.T @ matrix
    u_small, singular, v_t = torch.linalg.svd(small, full_matrices=False)
    return basis @ u_small[:, :rank], singular[:rank], v_t[:rank]


def lowrank_approximation(
    tensor: torch.Tensor,
    *,
    rank: int,
    generator: torch.Generator,
    power_iters: int = 2,
    oversample: int = 8,
    inplace: bool = False,
) -> torch.Tensor:
    """Replace every matrix by its rank-``rank`` randomized-SVD approximation (dense).

    Matrices whose smaller side is at most ``rank`` are left unchanged (already of rank <= r).
    """
    result = _target(tensor, inplace)
    for matrix in _matrices(result):
        if min(matrix.shape) <= rank:
            continue
        values = matrix.float()
        u, s, v_t = _randomized_svd(
            values, rank, power_iters=power_iters, oversample=oversample, generator=generator
        )
        matrix.copy_((u * s) @ v_t)
    return result


def rank_one_collapse(
    tensor: torch.Tensor, *, generator: torch.Generator, inplace: bool = False
) -> torch.Tensor:
    """Replace every matrix by its leading rank-1 term rescaled to the original Frobenius norm."""
    result = _target(tensor, inplace)
    for matrix in _matrices(result):
        values = matrix.float()
        norm = values.norm()
        u, _, v_t = _randomized_svd(values, 1, power_iters=4, oversample=4, generator=generator)
        matrix.copy_((u @ v_t) * norm)
    return result
