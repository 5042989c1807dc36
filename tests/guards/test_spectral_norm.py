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
