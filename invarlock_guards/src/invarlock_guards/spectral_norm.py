"""Largest singular values of many matrices at once, on their device, by block Krylov iteration.

Matrices of equal shape are stacked and processed together. For a matrix ``W`` (``m x n``,
transposed so that ``n <= m``) the estimate is the largest eigenvalue of the symmetric PSD operator
``A = WᵀW`` (``σ_max = √λ_max``):

* if ``n <= exact_below`` the ``n x n`` Gram matrix is formed and solved exactly (``eigvalsh``);
* if ``n <= gram_below`` the Gram matrix is formed once and the Krylov iteration below runs on it
  (each step is then an ``n x n`` product instead of two passes over ``W``);
* otherwise the iteration applies ``A`` as ``Wᵀ(W V)`` and never forms it.

The iteration grows an orthonormal basis ``V`` of the block Krylov space
``span{V0, A V0, A² V0, ...}`` (``V0``: a random ``n x block`` start) and takes the Rayleigh–Ritz
estimate ``λ = λ_max(Vᵀ A V)``. The projected matrix is grown one block at a time (``O(n·k·b)`` per
step, not ``O(n·k²)``), the estimate only grows as the space grows, and it converges far faster than
plain power iteration (a Chebyshev polynomial of the step count in the spectral gap instead of
``(σ2/σ1)^{2q}``). Iteration stops when every estimate of the stack changes by at most
``tolerance`` (relative) between two steps.

Start vectors come from a generator seeded by ``(seed, key)`` per matrix, so an estimate does not
depend on which other matrices share its stack or on their order. A baseline and a subject module
under the same key therefore start from the same vectors, and their estimation errors largely
cancel in the ratio the spectral guard tests. No full SVD is ever taken.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs

from invarlock_core.optional_deps import require

__all__ = [
    "KrylovSettings",
    "MatrixStack",
    "certified_top_eigenvalues",
    "exact_gram",
    "exact_top_eigenvalues",
    "gram_stack_singular_values",
    "matrix_stacks",
    "scaled_singular_value",
    "stack_singular_values",
    "start_seed",
    "top_singular_values",
]

_MAX_STACK_ELEMENTS = 1 << 26  # about 256 MiB of float32 per stacked chunk


@attrs.frozen
class KrylovSettings:
    """Tolerance, iteration limit, block size and the size limits of the direct methods."""

    tolerance: float = 1e-3
    """Stop when no estimate of the stack moved by more than this (relative) in one step."""
    max_iterations: int = 64
    block_size: int = 8
    exact_below: int = 64
    """An operator of at most this side is solved exactly with ``eigvalsh``."""
    gram_below: int = 256
    """A matrix whose smaller side is at most this is reduced to its Gram matrix first."""


def start_seed(seed: int, key: str) -> int:
    """The per-matrix generator seed: stable across runs, processes and stack layouts."""
    return (seed * 1_000_003 + zlib.crc32(key.encode("utf-8"))) % (1 << 63)


@attrs.frozen
class MatrixStack:
    """Equal-shape matrices stacked as one float32 tensor: a chunk of :func:`matrix_stacks`."""

    indices: tuple[int, ...]
    """Positions of the stacked matrices in the caller's sequence."""
    stack: Any
    """``[batch, rows, cols]`` float32, ``rows >= cols``; a non-finite matrix is all zeros."""
    finite: tuple[bool, ...]
    transposed: tuple[bool, ...]
    """Whether a matrix was transposed to put its longer side first."""


def matrix_stacks(matrices: Sequence[Any], keys: Sequence[str]) -> Iterator[MatrixStack]:
    """``matrices`` (2-D tensors) grouped by shape and device into float32 stacks, oriented with
    at least as many rows as columns, in chunks of at most about 256 MiB."""
    torch = require("torch", purpose="spectral estimates")
    if len(matrices) != len(keys):
        raise ValueError("one key per matrix is needed")
    groups: dict[tuple[int, int, str], list[int]] = {}
    for index, matrix in enumerate(matrices):
        if matrix.ndim != 2:
            raise ValueError(
                f"{keys[index]}: expected a 2-D tensor, got shape {tuple(matrix.shape)}"
            )
        rows, cols = matrix.shape
        groups.setdefault((max(rows, cols), min(rows, cols), str(matrix.device)), []).append(index)
    for (rows, cols, _device), members in groups.items():
        per_chunk = max(1, _MAX_STACK_ELEMENTS // max(1, rows * cols))
        for start in range(0, len(members), per_chunk):
            chunk = members[start : start + per_chunk]
            transposed = tuple(matrices[i].shape[0] < matrices[i].shape[1] for i in chunk)
            # Not around the yield: a generator must not leave grad mode changed for its caller.
            with torch.no_grad():
                stack = torch.stack(
                    [(matrices[i].T if flip else matrices[i]) for i, flip in zip(chunk, transposed)]
                )
                if stack.dtype != torch.float32:
                    stack = stack.to(torch.float32)
                stack, finite = _zero_nonfinite(stack, torch)
            yield MatrixStack(tuple(chunk), stack, finite, transposed)


def _zero_nonfinite(stack: Any, torch: Any) -> tuple[Any, tuple[bool, ...]]:
    """``stack`` with its non-finite matrices zeroed, and which matrices were finite."""
    # A sum is non-finite iff some entry is (or finite entries overflow: checked exactly next):
    # one cheap reduction instead of an elementwise mask.
    finite = torch.isfinite(stack.sum(dim=(1, 2)))
    if not bool(finite.all()):
        finite = torch.isfinite(stack).flatten(1).all(dim=1)
        stack = torch.where(finite[:, None, None], stack, torch.zeros_like(stack))
    return stack, tuple(bool(f) for f in finite.tolist())


def stack_singular_values(
    stack: Any, keys: Sequence[str], *, seed: int = 0, settings: KrylovSettings = KrylovSettings()
) -> Any:
    """``σ_max`` of each finite matrix of an oriented stack (a tensor on the stack's device)."""
    torch = require("torch", purpose="spectral estimates")
    on_lambda = _on_lambda(settings)
    with torch.no_grad():
        cols = stack.shape[-1]
        if cols <= settings.gram_below:
            gram = stack.mT @ stack
            return _top_eigenvalues(gram, keys, seed, on_lambda, torch).sqrt()
        starts = _start_blocks(cols, settings.block_size, keys, seed, stack, torch)
        # WᵀW V as ((Vᵀ Wᵀ) W)ᵀ: a skinny row block times a matrix is the fast BLAS path (the
        # W V form takes about twice as long on CPU).
        return _krylov(
            lambda block: ((block.mT @ stack.mT) @ stack).mT, starts, on_lambda, torch
        ).sqrt()


def top_singular_values(
    matrices: Sequence[Any],
    keys: Sequence[str],
    *,
    seed: int = 0,
    settings: KrylovSettings = KrylovSettings(),
) -> list[float]:
    """``σ_max`` of every 2-D tensor in ``matrices`` (``nan`` for non-finite ones)."""
    return _per_matrix(
        matrices,
        keys,
        lambda stack, chunk_keys: stack_singular_values(
            stack, chunk_keys, seed=seed, settings=settings
        ),
    )


def gram_stack_singular_values(
    stack: Any, keys: Sequence[str], *, seed: int = 0, settings: KrylovSettings = KrylovSettings()
) -> Any:
    """``σ_max(X)`` from a ``[batch, n, n]`` stack of Gram matrices ``XᵀX`` a caller accumulated
    itself, as a tensor (``nan`` for a non-finite Gram); ``settings.tolerance`` is stated on σ,
    as for :func:`top_singular_values`."""
    torch = require("torch", purpose="spectral estimates")
    if stack.ndim != 3 or stack.shape[-1] != stack.shape[-2] or stack.shape[0] != len(keys):
        raise ValueError(f"expected one square matrix per key, got shape {tuple(stack.shape)}")
    with torch.no_grad():
        stack = stack.float()
        # A PSD matrix with a finite diagonal is finite (|g_ij| <= sqrt(g_ii g_jj)).
        finite = torch.isfinite(stack.diagonal(dim1=1, dim2=2).sum(dim=1))
        clean = bool(finite.all())
        if not clean:
            stack = torch.where(finite[:, None, None], stack, torch.zeros_like(stack))
        sigma = _top_eigenvalues(stack, keys, seed, _on_lambda(settings), torch).sqrt()
        return sigma if clean else torch.where(finite, sigma, torch.full_like(sigma, math.nan))


def scaled_singular_value(
    matrix: Any,
    scales: Any,
    key: str,
    *,
    seed: int = 0,
    settings: KrylovSettings = KrylovSettings(),
) -> float:
    """``σ_max(A D)`` of one ``m x n`` matrix ``A`` with its columns scaled by ``scales``
    (``D = diag(scales)``), by block Krylov iteration on the smaller side.

    ``A D`` is never formed and ``A`` is neither copied nor transposed: each step is two skinny
    products with ``A`` (``D`` is applied to the skinny blocks). ``A`` must be finite.
    """
    torch = require("torch", purpose="spectral estimates")
    if matrix.ndim != 2 or scales.shape != (matrix.shape[1],):
        raise ValueError(
            f"{key}: expected a 2-D matrix and one scale per column, got shapes "
            f"{tuple(matrix.shape)} and {tuple(scales.shape)}"
        )
    rows, cols = int(matrix.shape[0]), int(matrix.shape[1])
    with torch.no_grad():
        if cols <= rows:  # (A D)ᵀ(A D) V, as rows: (((D V)ᵀ Aᵀ) A) D

            def apply(block: Any) -> Any:
                image = ((block[0] * scales[:, None]).mT @ matrix.mT) @ matrix
                return (image * scales).mT[None]

        else:  # (A D)(A D)ᵀ U, as rows: ((Uᵀ A) D²) Aᵀ
            squared = scales * scales

            def apply(block: Any) -> Any:
                return (((block[0].mT @ matrix) * squared) @ matrix.mT).mT[None]

        side = min(rows, cols)
        starts = _start_blocks(side, settings.block_size, [key], seed, matrix, torch)
        return float(_krylov(apply, starts, _on_lambda(settings), torch)[0].sqrt())


def _per_matrix(
    matrices: Sequence[Any], keys: Sequence[str], solve: Callable[[Any, list[str]], Any]
) -> list[float]:
    """``solve`` over :func:`matrix_stacks` chunks, as one float per matrix (``nan`` when not
    finite)."""
    torch = require("torch", purpose="spectral estimates")
    results = [float("nan")] * len(matrices)
    for chunk in matrix_stacks(matrices, keys):
        with torch.no_grad():
            values = solve(chunk.stack, [keys[i] for i in chunk.indices]).tolist()
        for index, value, finite in zip(chunk.indices, values, chunk.finite):
            if finite:
                results[index] = float(value)
    return results


def _on_lambda(settings: KrylovSettings) -> KrylovSettings:
    """``settings`` for iterating ``λ = σ²`` when the tolerance is stated on ``σ``: a relative
    change ε in λ is ε/2 in σ, so λ is iterated to twice the tolerance."""
    return attrs.evolve(settings, tolerance=2.0 * settings.tolerance)


def _start_blocks(
    side: int, block: int, keys: Sequence[str], seed: int, like: Any, torch: Any
) -> Any:
    """One seeded ``side x block`` Gaussian start per key, stacked on ``like``'s device."""
    width = min(block, side)
    starts = []
    for key in keys:
        generator = torch.Generator().manual_seed(start_seed(seed, key))
        starts.append(torch.randn(side, width, generator=generator, dtype=torch.float32))
    return torch.stack(starts).to(like.device)


def exact_gram(stack: Any, settings: KrylovSettings) -> Any | None:
    """``WᵀW`` of an oriented stack whose ``σ_max`` is solved exactly (smaller side at most
    ``exact_below``), else ``None``: for a caller that gathers the Grams of several stacks and
    solves them together with :func:`exact_top_eigenvalues`."""
    return stack.mT @ stack if stack.shape[-1] <= settings.exact_below else None


_FIRST_CHECK = 6
"""The first squaring (``p = 64``) after which the bracket is checked; the squaring stops early
when it already certifies every matrix."""

_SQUARING_ABOVE = 32
"""Sides up to this are always solved by ``eigvalsh`` (it is the faster there on CPU)."""


def certified_top_eigenvalues(stack: Any, tolerance: float) -> tuple[Any, Any]:
    """``(λ, certified)`` for a ``[batch, n, n]`` stack of symmetric PSD matrices: ``λ`` is a
    lower bound of ``λ_max``, within ``tolerance`` (relative) of it where ``certified`` is True.

    Repeated squaring, with a bracket from traces: for ``A = G / tr(G)`` and ``p = 2^q``,
    ``r = tr(A^(p+1)) / tr(A^p)`` is a mean of the eigenvalues weighted by ``λ_i^p``, so
    ``r <= λ_max``, and ``λ_max^p <= tr(A^p)``, so ``λ_max <= tr(A^p)^(1/p)``. The bracket is
    narrow unless several eigenvalues crowd the top (``tr(A^p)^(1/p)`` exceeds ``λ_max`` by the
    factor ``m^(1/p)`` with ``m`` eigenvalues at the top). ``q`` is the smallest count (6 to 12)
    with ``2^(1/p) <= 1 + tolerance``, so that two tied top eigenvalues still certify (9 for
    ``2·10^-3``, 7 for ``10^-2``). The bracket is first checked after 6 squarings (``p = 64``),
    then every third: the squaring stops as soon as it certifies every matrix of the stack (a
    clear top gap certifies at ``p = 64``; ties need the full count). ``A^p`` is renormalised to
    unit trace every third squaring (no underflow: its top eigenvalue stays at least ``n^-8``).
    Each squaring is one batched product, where ``eigvalsh`` runs one LAPACK call per matrix.
    """
    torch = require("torch", purpose="spectral estimates")
    if not tolerance > 0.0:
        raise ValueError(f"the tolerance must be positive, got {tolerance}")
    squarings = max(_FIRST_CHECK, math.ceil(math.log2(math.log(2.0) / math.log1p(tolerance))))
    squarings = min(12, squarings)
    trace = stack.diagonal(dim1=1, dim2=2).sum(dim=1)
    scale = torch.where(trace > 0, trace, torch.ones_like(trace))
    unit = stack / scale[:, None, None]
    power = unit
    log_trace = torch.zeros_like(trace)  # log tr(A^p) / p, accumulated over renormalisations
    for step in range(1, squarings + 1):
        power = power @ power
        if step % 3 == 0 or step == squarings:
            level = power.diagonal(dim1=1, dim2=2).sum(dim=1)
            power = power / level[:, None, None]
            log_trace = log_trace + level.log() * 2.0**-step
        if step >= _FIRST_CHECK and (step % 3 == 0 or step == squarings):
            lower = (power * unit).sum(dim=(1, 2))  # tr(A^(p+1)) / tr(A^p): unit-trace power
            certified = (log_trace.exp() <= lower * (1.0 + tolerance)) | (trace == 0)
            certified = certified & torch.isfinite(lower)
            if step == squarings or bool(certified.all()):
                break
    return torch.where(trace > 0, lower * scale, 0.0), certified


def exact_top_eigenvalues(stacks: Sequence[Any], *, tolerance: float = 0.0) -> list[Any]:
    """``λ_max`` of every matrix of several ``[batch, n, n]`` stacks of symmetric PSD matrices,
    one tensor per stack: exact (``eigvalsh``), or within ``tolerance`` (relative) when it is
    positive.

    Stacks of one size and device are concatenated and solved in one call (measured on CPU:
    the tiny models' spectral measurement takes 11–20% less time than with one call per shape
    stack). float32 is enough: ``eigvalsh`` is backward stable, ``|Δλ| <= ~n·ε₃₂·λ_max``. With a
    tolerance, sides above 32 are solved by :func:`certified_top_eigenvalues` (a third less time
    for a stack of 11 64 x 64 Grams on CPU), and only the matrices it cannot certify by
    ``eigvalsh``.
    """
    torch = require("torch", purpose="spectral estimates")
    groups: dict[tuple[int, str], list[int]] = {}
    for index, stack in enumerate(stacks):
        groups.setdefault((int(stack.shape[-1]), str(stack.device)), []).append(index)
    values: list[Any] = [None] * len(stacks)
    for (side, _device), members in groups.items():
        parts = [stacks[i] for i in members]
        joined = parts[0] if len(parts) == 1 else torch.cat(parts)
        if tolerance > 0.0 and side > _SQUARING_ABOVE:
            top, certified = certified_top_eigenvalues(joined, tolerance)
            if not bool(certified.all()):
                doubtful = (~certified).nonzero().flatten()
                top[doubtful] = torch.linalg.eigvalsh(joined[doubtful])[:, -1]
            top = top.clamp_min(0.0)
        else:
            top = torch.linalg.eigvalsh(joined)[:, -1].clamp_min(0.0)
        for index, part in zip(members, top.split([int(p.shape[0]) for p in parts])):
            values[index] = part
    return values


def _top_eigenvalues(
    stack: Any, keys: Sequence[str], seed: int, settings: KrylovSettings, torch: Any
) -> Any:
    """``λ_max`` of each symmetric PSD matrix of ``stack`` (exact when small, else Krylov)."""
    side = stack.shape[-1]
    if side <= settings.exact_below:
        return exact_top_eigenvalues([stack], tolerance=settings.tolerance)[0]
    starts = _start_blocks(side, settings.block_size, keys, seed, stack, torch)
    # A V as (Vᵀ A)ᵀ (A is symmetric): the skinny-times-square product is about 4x faster on CPU.
    return _krylov(lambda block: (block.mT @ stack).mT, starts, settings, torch)


def _orthonormalize(block: Any, basis: Any | None, torch: Any) -> Any:
    """``block`` made orthonormal and orthogonal to ``basis``, with exhausted directions zeroed.

    A column that (almost) vanishes after projection carries no new direction; it is set to zero
    instead of being normalised rounding noise, which keeps ``basis`` orthonormal or zero.
    """
    scale = block.norm(dim=-2).amax(dim=-1, keepdim=True)
    if basis is not None:
        block = block - basis @ (basis.mT @ block)
    block, upper = torch.linalg.qr(block)
    keep = upper.diagonal(dim1=-2, dim2=-1).abs() > 1e-4 * scale
    if basis is not None:
        block = block - basis @ (basis.mT @ block)
        block, _ = torch.linalg.qr(block)
    return block * keep[..., None, :].to(block.dtype)


def _krylov(apply: Callable[[Any], Any], starts: Any, settings: KrylovSettings, torch: Any) -> Any:
    """Rayleigh–Ritz ``λ_max`` of the PSD operator ``apply`` (batched) from a block Krylov basis."""
    batch, side, _ = starts.shape
    block = _orthonormalize(starts, None, torch)
    width = block.shape[-1]
    capacity = min(side, width * (settings.max_iterations + 1))
    # Only the leading ``size`` columns (and the leading square of ``projected``) are ever read.
    basis = starts.new_empty(batch, side, capacity)
    projected = torch.empty(batch, capacity, capacity, dtype=torch.float64, device=starts.device)
    size = 0
    previous = None
    estimate = torch.zeros(batch, dtype=torch.float64, device=starts.device)
    for _ in range(settings.max_iterations + 1):
        width = block.shape[-1]
        image = apply(block)  # A V_new: the new block's column of VᵀAV and the next direction
        basis[..., size : size + width] = block
        column = (basis[..., : size + width].mT @ image).to(torch.float64)
        projected[:, : size + width, size : size + width] = column
        projected[:, size : size + width, :size] = column[:, :size, :].mT
        size += width
        square = projected[:, :size, :size]
        estimate = torch.linalg.eigvalsh((square + square.mT) / 2)[:, -1].clamp_min(0.0)
        if size >= capacity:
            break  # the basis spans the space (exact) or the iteration budget is spent
        if previous is not None:
            change = (estimate - previous).abs()
            if bool((change <= settings.tolerance * estimate.clamp_min(1e-30)).all()):
                break
        previous = estimate
        block = _orthonormalize(image[..., : capacity - size], basis[..., :size], torch)
    return estimate
