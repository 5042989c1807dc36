"""TV / ε / permutation / earth-mover math (hypothesis properties and reference values)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veriscope_gate.divergence import (
    bin_indices,
    eps_stat,
    histogram_tv,
    permutation_test,
    transport,
    wasserstein1,
)

unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
samples = st.lists(unit, min_size=1, max_size=60)


@given(samples, samples, st.integers(min_value=2, max_value=32))
def test_tv_is_a_bounded_symmetric_distance(a: list[float], b: list[float], bins: int) -> None:
    ab = histogram_tv(a, b, bins)
    ba = histogram_tv(b, a, bins)
    assert ab is not None
    assert ba is not None
    assert 0.0 <= ab <= 1.0 + 1e-12
    assert ab == pytest.approx(ba)
    assert histogram_tv(a, a, bins) == pytest.approx(0.0)


@given(samples, samples, samples)
def test_tv_triangle_inequality(a: list[float], b: list[float], c: list[float]) -> None:
    ab, bc, ac = histogram_tv(a, b), histogram_tv(b, c), histogram_tv(a, c)
    assert ab is not None
    assert bc is not None
    assert ac is not None
    assert ac <= ab + bc + 1e-9


def test_tv_empty_sides_and_nan() -> None:
    assert histogram_tv([], []) == 0.0
    assert histogram_tv([0.5], []) is None
    assert histogram_tv([math.nan], [0.2]) is None  # NaN dropped -> one side empty
    assert histogram_tv([0.0, 0.0], [1.0, 1.0]) == pytest.approx(1.0)


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=30),
       st.floats(-5, 5), st.floats(0.1, 10))
def test_transport_clips_to_unit_interval(values: list[float], lo: float, width: float) -> None:
    u = transport(values, lo, lo + width)
    finite = u[np.isfinite(u)]
    assert np.all((finite >= 0.0) & (finite <= 1.0))
    idx = bin_indices(u, 16)
    assert np.all((idx >= -1) & (idx <= 15))


def test_transport_rejects_empty_range() -> None:
    with pytest.raises(ValueError, match="empty calibration range"):
        transport([1.0], 1.0, 1.0)


@pytest.mark.parametrize(("n", "expected"), [(20, 0.3797), (50, 0.2402), (100, 0.1698)])
def test_eps_stat_reference_values(n: int, expected: float) -> None:
    assert eps_stat(n, 16, 0.05) == pytest.approx(expected, abs=5e-5)


@given(st.integers(1, 10_000), st.integers(2, 64))
def test_eps_stat_is_monotone_and_bounded(n: int, bins: int) -> None:
    e = eps_stat(n, bins)
    assert 0.0 < e <= 1.0
    assert eps_stat(n + 1, bins) <= e


@given(samples, samples)
def test_wasserstein_is_symmetric_bounded_and_zero_on_self(a: list[float], b: list[float]) -> None:
    d = wasserstein1(a, b)
    assert d is not None
    assert 0.0 <= d <= 1.0 + 1e-12
    assert d == pytest.approx(wasserstein1(b, a) or 0.0)
    assert wasserstein1(a, a) == pytest.approx(0.0)


@given(samples, st.floats(0.0, 0.5))
def test_wasserstein_of_a_translation_is_the_shift(a: list[float], shift: float) -> None:
    arr = np.asarray(a) * 0.5
    assert wasserstein1(arr, arr + shift) == pytest.approx(shift, abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_permutation_p_value_is_valid(seed: int) -> None:
    rng = np.random.default_rng(seed)
    past = {"m": rng.random(20), "k": rng.random(20)}
    recent = {"m": rng.random(20), "k": rng.random(20)}
    res = permutation_test(past, recent, {"m": 0.5, "k": 0.5}, permutations=99, seed=seed)
    assert 1 / 100 <= res.aggregate_p <= 1.0
    assert all(1 / 100 <= p <= 1.0 for p in res.per_metric_p.values())
    direct = 0.5 * histogram_tv(past["m"], recent["m"]) + 0.5 * histogram_tv(past["k"], recent["k"])  # type: ignore[operator]
    assert res.aggregate == pytest.approx(direct)


def test_permutation_null_is_calibrated_at_small_windows() -> None:
    """Under exchangeability P(p <= 1%) <= 1% (+ Monte-Carlo slack) at n = 20 per window."""
    rng = np.random.default_rng(7)
    hits = 0
    trials = 400
    for t in range(trials):
        # a narrow distribution on a bin edge: the case where a fixed ε threshold fails
        vals = 0.5 + 0.01 * rng.standard_normal(40)
        res = permutation_test({"m": vals[:20]}, {"m": vals[20:]}, {"m": 1.0}, permutations=199, seed=t)
        hits += res.aggregate_p <= 0.01
    assert hits / trials <= 0.025


def test_permutation_detects_a_real_shift() -> None:
    rng = np.random.default_rng(3)
    past = {"m": 0.4 + 0.02 * rng.standard_normal(20)}
    recent = {"m": 0.55 + 0.02 * rng.standard_normal(20)}
    res = permutation_test(past, recent, {"m": 1.0}, permutations=199, seed=0)
    assert res.aggregate_p <= 0.01
    assert res.aggregate > 0.9
