"""The exact and matrix-free σ_max helpers the spectral and RMT guards share: solving several
stacks per size in one call changes no value, the scaled iteration equals an SVD of the scaled
matrix on either side, and non-finite Grams come back as NaN."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from invarlock_guards.spectral_norm import (
    certified_top_eigenvalues,
    exact_top_eigenvalues,
    gram_stack_singular_values,
    scaled_singular_value,
)


def _grams(sizes: list[tuple[int, int]], seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    stacks = []
    for batch, side in sizes:
        factor = torch.randn(batch, 2 * side, side, generator=generator)
        stacks.append(factor.mT @ factor)
    return stacks


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(
        st.tuples(st.integers(1, 3), st.sampled_from([4, 8, 16])), min_size=1, max_size=5
    ),
    seed=st.integers(0, 2**16),
)
def test_stacks_solved_together_equal_each_stack_solved_alone(
    sizes: list[tuple[int, int]], seed: int
) -> None:
    stacks = _grams(sizes, seed)
    together = exact_top_eigenvalues(stacks)
    assert [tuple(v.shape) for v in together] == [(batch,) for batch, _side in sizes]
    for stack, values in zip(stacks, together):
        alone = torch.linalg.eigvalsh(stack)[:, -1]
        # One LAPACK call per matrix either way: batching must not change a single bit.
        assert torch.equal(values, alone.clamp_min(0.0))
    reordered = exact_top_eigenvalues(stacks[::-1])[::-1]
    assert all(torch.equal(a, b) for a, b in zip(together, reordered))


def _spectrum_stack(spectra: list[list[float]], seed: int) -> torch.Tensor:
    """PSD matrices ``Q diag(spectrum) Qᵀ`` with random orthogonal ``Q``, float32."""
    generator = torch.Generator().manual_seed(seed)
    side = len(spectra[0])
    mats = []
    for spectrum in spectra:
        q, _ = torch.linalg.qr(torch.randn(side, side, generator=generator, dtype=torch.float64))
        mats.append(q @ torch.diag(torch.tensor(spectrum, dtype=torch.float64)) @ q.T)
    return torch.stack(mats).float()


_SPECTRA = st.sampled_from(["gaussian", "tied", "gap", "low_rank", "zero", "clustered", "shelf"])


@settings(max_examples=30, deadline=None)
@given(
    kinds=st.lists(_SPECTRA, min_size=1, max_size=6),
    side=st.integers(33, 64),
    tolerance=st.sampled_from([2e-3, 1e-2]),
    seed=st.integers(0, 2**16),
)
def test_certified_solve_is_within_its_tolerance_and_exact_ones_fall_back(
    kinds: list[str], side: int, tolerance: float, seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    spectra = []
    for kind in kinds:
        base = torch.rand(side, generator=generator, dtype=torch.float64) * 10
        spectrum = {
            "gaussian": base,
            "tied": torch.where(torch.arange(side) < 3, 10.0, base),  # three equal top values
            "gap": torch.where(torch.arange(side) == 0, 30.0, base),
            "low_rank": torch.where(torch.arange(side) < 4, base, 0.0),
            "zero": torch.zeros(side, dtype=torch.float64),
            "clustered": 10.0 - base * 1e-4,  # every eigenvalue within 1e-4 of the top
            "shelf": torch.where(torch.arange(side) == 0, 10.0, torch.where(base < 5, 9.975, base)),
        }[kind]
        spectra.append(spectrum.tolist())
    stack = _spectrum_stack(spectra, seed)
    exact = torch.linalg.eigvalsh(stack.double())[:, -1].clamp_min(0.0)
    lower, certified = certified_top_eigenvalues(stack, tolerance)
    slack = 1e-5 * exact.max()  # float32 rounding of the stack itself
    for value, ok, truth in zip(lower.double(), certified.tolist(), exact):
        assert value <= truth * (1 + 1e-5) + slack  # always a lower bound
        if ok:
            assert value >= truth * (1 - tolerance) - slack
    solved = exact_top_eigenvalues([stack], tolerance=tolerance)[0].double()
    assert torch.all(solved >= exact * (1 - tolerance) - slack)
    assert torch.all(solved <= exact * (1 + 1e-5) + slack)


def test_crowded_tops_fall_back_to_eigvalsh_and_isolated_ones_do_not() -> None:
    side = 64
    flat = [[1.0] * side]  # an identity: every eigenvalue ties for the top
    gap = [[5.0] + [1.0] * (side - 1)]
    lower, certified = certified_top_eigenvalues(_spectrum_stack(flat + gap, 0), 2e-3)
    assert certified.tolist() == [False, True]
    assert float(lower[1]) == pytest.approx(5.0, rel=1e-6)
    # Two tied top eigenvalues do not certify after the first check (p = 64): the squaring goes
    # on to the full count, where they do.
    pair = [[5.0, 5.0] + [1.0] * (side - 2)]
    lower, certified = certified_top_eigenvalues(_spectrum_stack(gap + pair, 4), 2e-3)
    assert certified.tolist() == [True, True]
    assert lower.tolist() == pytest.approx([5.0, 5.0], rel=1e-6)
    # A shelf of 30 eigenvalues just below the top: the lower bound is off by more than the
    # tolerance, the bracket says so, and eigvalsh gives the answer.
    shelf = [[10.0] + [10.0 * (1 - 1 / 400)] * 30 + [1.0] * (side - 31)]
    lower, certified = certified_top_eigenvalues(_spectrum_stack(shelf, 2), 2e-3)
    assert not bool(certified[0])
    assert float(lower[0]) < 10.0 * (1 - 2e-3)
    solved = exact_top_eigenvalues([_spectrum_stack(flat + shelf, 1)], tolerance=2e-3)[0]
    assert solved.tolist() == pytest.approx([1.0, 10.0], rel=1e-5)
    with pytest.raises(ValueError, match="must be positive"):
        certified_top_eigenvalues(_spectrum_stack(gap, 3), 0.0)


def test_gram_stacks_give_sigma_and_nan_for_non_finite_grams() -> None:
    (stack,) = _grams([(3, 8)], seed=1)
    stack[1, 2, 2] = math.inf
    sigmas = gram_stack_singular_values(stack, ["a", "b", "c"])
    exact = torch.linalg.eigvalsh(stack[[0, 2]].double())[:, -1].sqrt()
    assert math.isnan(float(sigmas[1]))
    assert sigmas[[0, 2]].double() == pytest.approx(exact, rel=1e-5)
    with pytest.raises(ValueError, match="one square matrix per key"):
        gram_stack_singular_values(stack, ["a"])


@pytest.mark.parametrize(("rows", "cols"), [(600, 300), (300, 600)])
def test_scaled_iteration_equals_the_svd_of_the_scaled_matrix(rows: int, cols: int) -> None:
    generator = torch.Generator().manual_seed(rows)
    matrix = torch.randn(rows, cols, generator=generator)
    matrix += 0.5 * torch.outer(
        torch.randn(rows, generator=generator), torch.randn(cols, generator=generator)
    )
    scales = torch.rand(cols, generator=generator) + 0.5
    scales[:7] = 0.0  # dead columns
    estimate = scaled_singular_value(matrix, scales, "m")
    exact = float(torch.linalg.svdvals((matrix * scales).double())[0])
    assert estimate == pytest.approx(exact, rel=1e-3)
    assert estimate <= exact * (1 + 1e-5)  # Rayleigh–Ritz never overshoots
    # The same start vectors whichever side is iterated: the transposed problem agrees.
    assert scaled_singular_value(matrix.mT * scales[:, None], torch.ones(rows), "m") == (
        pytest.approx(estimate, rel=1e-3)
    )
    assert scaled_singular_value(matrix, torch.zeros(cols), "m") == 0.0
    with pytest.raises(ValueError, match="one scale per column"):
        scaled_singular_value(matrix, scales[:-1], "m")


def test_measure_spectra_matches_svd_with_exact_and_iterated_stacks_interleaved() -> None:
    """Exactly solved stacks are solved after the loop: each σ must still land on its matrix,
    whatever the order of exact and iterated shapes, and a NaN matrix poisons no stack-mate."""
    from invarlock_guards.spectral import measure_spectra
    from invarlock_guards.spectral_norm import KrylovSettings

    torch.manual_seed(0)
    model = torch.nn.ModuleDict(
        {
            "a": torch.nn.Linear(64, 64),  # exact (64-sided Gram)
            "b": torch.nn.Linear(300, 280),  # iterated (smaller side 280)
            "c": torch.nn.Linear(64, 100),  # exact, another shape of the same Gram size
            "d": torch.nn.Linear(64, 64),  # stack-mate of "a"
            "e": torch.nn.Linear(32, 16),  # exact, a smaller size
        }
    )
    with torch.no_grad():
        model["d"].weight[3, 5] = math.nan
    spectra, sketches = measure_spectra(model, seed=0, krylov=KrylovSettings())
    for name in ("a", "b", "c", "e"):
        weight = model[name].weight.detach()
        spectrum = spectra[f"{name}.weight"]
        assert spectrum.finite
        assert spectrum.sigma == pytest.approx(float(torch.linalg.svdvals(weight)[0]), rel=1e-3)
        assert spectrum.frobenius == pytest.approx(float(weight.norm()), rel=1e-5)
        assert f"{name}.weight" in sketches
    assert not spectra["d.weight"].finite
    assert math.isnan(spectra["d.weight"].sigma)
    assert "d.weight" not in sketches
