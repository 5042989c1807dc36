"""Properties of the numeric kernels (hypothesis), independent of any checkpoint."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from invarlock_edits.kernels import (
    fp8_round_trip,
    lowrank_approximation,
    magnitude_prune,
    rank_one_collapse,
    rtn_quantize,
    tensor_generator,
)

SETTINGS = settings(max_examples=40, deadline=None)


def _matrix(seed: int, rows: int, cols: int, scale: float) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=generator) * scale


shapes = st.tuples(st.integers(1, 24), st.integers(1, 70))


@SETTINGS
@given(
    seed=st.integers(0, 2**31),
    shape=shapes,
    bits=st.integers(2, 8),
    group=st.sampled_from([0, 1, 3, 8, 32, 128]),
    symmetric=st.booleans(),
    scale=st.sampled_from([1e-3, 1.0, 50.0]),
)
def test_rtn_error_is_at_most_half_a_step(
    seed: int, shape: tuple[int, int], bits: int, group: int, symmetric: bool, scale: float
) -> None:
    weights = _matrix(seed, *shape, scale)
    out = rtn_quantize(weights, bits=bits, group_size=group, symmetric=symmetric)
    assert out.shape == weights.shape
    assert out.dtype == weights.dtype
    cols = shape[1]
    g = cols if group <= 0 or group >= cols else group
    for row in range(shape[0]):
        for start in range(0, cols, g):
            block = weights[row, start : start + g]
            if symmetric:
                step = max(float(block.abs().max()) / (2 ** (bits - 1) - 1), 1e-10)
            else:
                step = max(float(block.max() - block.min()) / (2**bits - 1), 1e-10)
            error = (out[row, start : start + g] - block).abs().max()
            assert float(error) <= step / 2 + 1e-6 * step + 1e-12
            levels = torch.unique(out[row, start : start + g]).numel()
            assert levels <= 2**bits


@SETTINGS
@given(seed=st.integers(0, 2**31), shape=shapes, bits=st.integers(2, 8))
def test_rtn_on_the_transposed_input_axis_equals_rtn_of_the_transpose(
    seed: int, shape: tuple[int, int], bits: int
) -> None:
    weights = _matrix(seed, *shape, 1.0)
    direct = rtn_quantize(weights, bits=bits, group_size=4, axis=0)
    reference = rtn_quantize(weights.T.contiguous(), bits=bits, group_size=4).T
    assert torch.equal(direct, reference)


def test_rtn_handles_fused_expert_tensors_and_bfloat16() -> None:
    experts = torch.randn(4, 6, 40, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    out = rtn_quantize(experts, bits=4, group_size=8)
    per_matrix = torch.stack([rtn_quantize(m, bits=4, group_size=8) for m in experts])
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, per_matrix)


def test_rtn_inplace_reuses_storage_and_chunking_does_not_change_results(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import invarlock_edits.kernels as kernels

    weights = _matrix(3, 300, 50, 1.0)
    whole = rtn_quantize(weights, bits=3, group_size=16)
    monkeypatch.setattr(kernels, "_CHUNK_ELEMENTS", 120)  # a few rows per chunk
    copy = weights.clone()
    chunked = rtn_quantize(copy, bits=3, group_size=16, inplace=True)
    assert chunked.data_ptr() == copy.data_ptr()
    assert torch.equal(whole, chunked)


@SETTINGS
@given(seed=st.integers(0, 2**31), shape=shapes, level=st.floats(0.0, 1.0), zeros=st.integers(0, 5))
def test_pruning_hits_the_requested_sparsity_exactly(
    seed: int, shape: tuple[int, int], level: float, zeros: int
) -> None:
    weights = _matrix(seed, *shape, 1.0)
    flat = weights.view(-1)
    flat[: min(zeros, flat.numel())] = 0.0  # pre-existing zeros count towards the sparsity
    if flat.numel() > 4:
        flat[-3:] = flat[-4]  # ties at the threshold are broken by position
    already = int((weights == 0).sum())
    out = magnitude_prune(weights, level=level)
    k = round(level * weights.numel())
    assert int((out == 0).sum()) == max(k, already)
    kept = out != 0
    if kept.any() and (~kept).any():
        assert float(weights[~kept].abs().max()) <= float(weights[kept].abs().min())
    assert torch.equal(out[kept], weights[kept])


def test_pruning_sparsity_is_exact_for_distinct_magnitudes() -> None:
    weights = torch.arange(1, 101, dtype=torch.float32).reshape(10, 10) * torch.tensor(
        [1.0, -1.0]
    ).repeat(5)
    for level in (0.0, 0.01, 0.12, 0.5, 0.995, 1.0):
        out = magnitude_prune(weights, level=level)
        assert int((out == 0).sum()) == round(level * 100)
        assert set(out[out != 0].abs().tolist()) == set(range(round(level * 100) + 1, 101))


@SETTINGS
@given(
    seed=st.integers(0, 2**31),
    rows=st.integers(2, 40),
    cols=st.integers(2, 40),
    rank=st.integers(1, 12),
    experts=st.integers(1, 3),
)
def test_lowrank_output_has_rank_at_most_r(
    seed: int, rows: int, cols: int, rank: int, experts: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    weights = torch.randn(experts, rows, cols, generator=generator).squeeze(0)
    out = lowrank_approximation(weights, rank=rank, generator=tensor_generator(seed, "w"))
    assert out.shape == weights.shape
    for matrix in out.reshape(-1, rows, cols):
        assert int(torch.linalg.matrix_rank(matrix)) <= rank
    if min(rows, cols) <= rank:
        assert torch.equal(out, weights)


def test_lowrank_recovers_an_exactly_low_rank_matrix_and_is_seeded() -> None:
    generator = torch.Generator().manual_seed(0)
    low = torch.randn(64, 5, generator=generator) @ torch.randn(5, 48, generator=generator)
    approx = lowrank_approximation(low, rank=5, generator=tensor_generator(0, "x"))
    assert torch.allclose(approx, low, atol=1e-3, rtol=1e-3)
    noisy = torch.randn(64, 48, generator=generator)
    a = lowrank_approximation(
        noisy, rank=4, power_iters=0, oversample=0, generator=tensor_generator(1, "x")
    )
    b = lowrank_approximation(
        noisy, rank=4, power_iters=0, oversample=0, generator=tensor_generator(1, "x")
    )
    c = lowrank_approximation(
        noisy, rank=4, power_iters=0, oversample=0, generator=tensor_generator(2, "x")
    )
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # With power iterations the randomized SVD is close to the optimal (truncated exact SVD) error.
    best = torch.linalg.svdvals(noisy)[4:].pow(2).sum().sqrt()
    good = lowrank_approximation(noisy, rank=4, generator=tensor_generator(1, "x"))
    assert float((noisy - good).norm()) <= 1.05 * float(best)


def test_rank_one_collapse_keeps_the_frobenius_norm() -> None:
    weights = torch.randn(3, 20, 30, generator=torch.Generator().manual_seed(5))
    out = rank_one_collapse(weights, generator=tensor_generator(0, "a"))
    for before, after in zip(weights, out):
        assert int(torch.linalg.matrix_rank(after)) == 1
        assert math.isclose(float(after.norm()), float(before.norm()), rel_tol=1e-4)


@pytest.mark.parametrize("fmt", ["e4m3fn", "e5m2"])
def test_fp8_round_trip_matches_a_saturating_cast(fmt: str) -> None:
    target = {"e4m3fn": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}[fmt]
    fmax = torch.finfo(target).max
    weights = torch.randn(50, 33, generator=torch.Generator().manual_seed(2)) * 3
    weights[0, 0] = 10 * fmax  # would be NaN/Inf without saturation
    out = fp8_round_trip(weights, fmt=fmt)
    expected = weights.clamp(-fmax, fmax).to(target).float()
    assert torch.equal(out, expected)
    assert bool(torch.isfinite(out).all())
    scaled = fp8_round_trip(weights * 1e-6, fmt=fmt, per_tensor_scale=True)
    relative = ((scaled - weights * 1e-6).abs() / (weights.abs() * 1e-6 + 1e-30)).median()
    assert float(relative) < 0.15  # small weights stay representable with a per-tensor scale
