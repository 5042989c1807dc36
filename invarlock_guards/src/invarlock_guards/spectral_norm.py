"""Largest singular values of many matrices at once, on their device, by block Krylov iteration.

Matrices of equal shape are stacked and processed together. For each matrix ``W`` (``m x n``,
transposed so that ``n <= m``) the method grows an orthonormal basis ``V`` of the block Krylov space
``span{V0, (WᵀW) V0, (WᵀW)² V0, ...}`` (``V0``: a random ``n x block`` start) and takes the
Rayleigh–Ritz estimate ``σ = sqrt(λ_max(Vᵀ WᵀW V))``, which only grows as the space grows and
converges to ``σ_max`` far faster than plain power iteration (the error after ``q`` steps decays
like a Chebyshev polynomial of degree ``q`` in the gap instead of ``(σ2/σ1)^{2q}``).
Iteration stops when every estimate in the stack changes by at most ``tolerance`` (relative).

Start vectors come from a generator seeded by ``(seed, key)`` per matrix, so an estimate does not
depend on which other matrices share its stack or on their order. Only ``O(n · block · steps)``
extra memory is used per matrix; no full SVD is ever taken.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import attrs

from invarlock_core.optional_deps import require

__all__ = ["KrylovSettings", "start_seed", "top_singular_values"]

_MAX_STACK_ELEMENTS = 1 << 26  # about 256 MiB of float32 per stacked chunk


@attrs.frozen
class KrylovSettings:
    """Tolerance, iteration limit and block size of the Krylov iteration."""

    tolerance: float = 1e-4
    max_iterations: int = 64
    block_size: int = 16
    exact_below: int = 256
    """Matrices whose smaller side is at most this are solved exactly (the top eigenvalue of the
    small Gram matrix ``WᵀW`` is cheaper than iterating); larger ones always use Krylov iteration."""


def start_seed(seed: int, key: str) -> int:
    """The per-matrix generator seed: stable across runs, processes and stack layouts."""
    return (seed * 1_000_003 + zlib.crc32(key.encode("utf-8"))) % (1 << 63)


def top_singular_values(
    matrices: Sequence[Any],
    keys: Sequence[str],
    *,
    seed: int = 0,
    settings: KrylovSettings = KrylovSettings(),
) -> list[float]:
    """``σ_max`` of every 2-D tensor in ``matrices`` (``nan`` for non-finite ones)."""
    torch = require("torch", purpose="spectral estimates")
    if len(matrices) != len(keys):
        raise ValueError("one key per matrix is needed")
    results = [float("nan")] * len(matrices)
    groups: dict[tuple[int, int, str], list[int]] = {}
    for index, matrix in enumerate(matrices):
        if matrix.ndim != 2:
            raise ValueError(
                f"{keys[index]}: expected a 2-D tensor, got shape {tuple(matrix.shape)}"
            )
        rows, cols = matrix.shape
        shape = (max(rows, cols), min(rows, cols))
        groups.setdefault((*shape, str(matrix.device)), []).append(index)
    with torch.no_grad():
        for (rows, cols, _device), members in groups.items():
            per_chunk = max(1, _MAX_STACK_ELEMENTS // max(1, rows * cols))
            for start in range(0, len(members), per_chunk):
                chunk = members[start : start + per_chunk]
                stack = torch.stack([_oriented(matrices[i], torch) for i in chunk])
                finite = torch.isfinite(stack).flatten(1).all(dim=1)
                if not bool(finite.all()):
                    stack = torch.where(finite[:, None, None], stack, torch.zeros_like(stack))
                if cols <= settings.exact_below:
                    # Exact: the largest eigenvalue of the small Gram matrix WᵀW (cols x cols).
                    gram = stack.transpose(-1, -2) @ stack
                    sigmas = torch.linalg.eigvalsh(gram)[:, -1].clamp_min(0.0).sqrt().cpu()
                else:
                    starts = torch.stack(
                        [
                            _start_block(
                                cols, settings.block_size, start_seed(seed, keys[i]), torch
                            )
                            for i in chunk
                        ]
                    ).to(stack.device)
                    sigmas = _krylov_sigma(stack, starts, settings, torch)
                for position, index in enumerate(chunk):
                    if bool(finite[position]):
                        results[index] = float(sigmas[position])
    return results


def _oriented(matrix: Any, torch: Any) -> Any:
    """``matrix`` as float32 with at least as many rows as columns."""
    work = matrix.detach().to(dtype=torch.float32)
    return work if work.shape[0] >= work.shape[1] else work.T


def _start_block(cols: int, block: int, seed: int, torch: Any) -> Any:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(cols, min(block, cols), generator=generator, dtype=torch.float32)


def _orthonormalize(block: Any, basis: Any | None, torch: Any) -> Any:
    """``block`` made orthonormal and orthogonal to ``basis``, with exhausted directions zeroed.

    A column that (almost) vanishes after projection carries no new direction; it is set to zero
    instead of being normalised rounding noise, which keeps ``basis`` orthonormal or zero.
    """
    scale = block.norm(dim=-2).amax(dim=-1, keepdim=True)
    if basis is not None:
        block = block - basis @ (basis.transpose(-1, -2) @ block)
    block, upper = torch.linalg.qr(block)
    keep = upper.diagonal(dim1=-2, dim2=-1).abs() > 1e-4 * scale
    if basis is not None:
        block = block - basis @ (basis.transpose(-1, -2) @ block)
        block, _ = torch.linalg.qr(block)
    return block * keep[..., None, :].to(block.dtype)


def _krylov_sigma(stack: Any, starts: Any, settings: KrylovSettings, torch: Any) -> Any:
    """Rayleigh–Ritz ``σ_max`` of each ``[m, n]`` matrix of ``stack`` from a block Krylov basis."""
    cols = stack.shape[-1]
    block = _orthonormalize(starts, None, torch)
    basis = block
    images = stack @ block  # W V, grown alongside the basis
    previous = None
    estimate = torch.zeros(stack.shape[0], dtype=torch.float64, device=stack.device)
    for _ in range(settings.max_iterations):
        gram = (images.transpose(-1, -2) @ images).to(torch.float64)
        estimate = torch.linalg.eigvalsh(gram)[..., -1].clamp_min(0.0).sqrt()
        if basis.shape[-1] >= cols:
            break  # the basis spans the whole space: the estimate is exact
        if previous is not None:
            change = (estimate - previous).abs()
            if bool((change <= settings.tolerance * estimate.clamp_min(1e-30)).all()):
                break
        previous = estimate
        last = images[..., -block.shape[-1] :]
        remaining = cols - basis.shape[-1]
        block = _orthonormalize((stack.transpose(-1, -2) @ last)[..., :remaining], basis, torch)
        basis = torch.cat([basis, block], dim=-1)
        images = torch.cat([images, stack @ block], dim=-1)
    return estimate.cpu()
