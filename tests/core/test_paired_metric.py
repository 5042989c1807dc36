"""Properties of the paired primary metric and its BCa bootstrap interval."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from invarlock_core.evaluation.paired_metric import (
    bca_interval,
    safe_exp,
    summarize_pair,
    weighted_jackknife_acceleration,
    weighted_mean,
)

losses = st.lists(st.floats(0.5, 8.0, allow_nan=False), min_size=3, max_size=40)
FAST = {"replicates": 200}


@st.composite
def paired(draw: st.DrawFn) -> tuple[list[float], list[float], list[int]]:
    base = draw(losses)
    n = len(base)
    noise = draw(st.lists(st.floats(-0.5, 0.5, allow_nan=False), min_size=n, max_size=n))
    tokens = draw(st.lists(st.integers(1, 512), min_size=n, max_size=n))
    return base, [b + d for b, d in zip(base, noise)], tokens


@given(base=losses, seed=st.integers(0, 2**31))
@settings(max_examples=40, deadline=None)
def test_identical_losses_give_ratio_one_and_a_point_interval(base: list[float], seed: int) -> None:
    summary = summarize_pair(base, base, [127] * len(base), seed=seed, **FAST)
    assert summary.ratio == 1.0
    assert summary.ci == (1.0, 1.0)
    assert summary.interval.method == "degenerate"


@given(data=paired(), seed=st.integers(0, 2**31))
@settings(max_examples=60, deadline=None)
def test_interval_contains_point_estimate_and_is_ordered(
    data: tuple[list[float], list[float], list[int]], seed: int
) -> None:
    base, subj, tokens = data
    summary = summarize_pair(base, subj, tokens, seed=seed, **FAST)
    lo, hi = summary.ci
    assert 0 < lo <= summary.ratio <= hi
    assert summary.interval.lo <= summary.delta <= summary.interval.hi


@given(data=paired(), shift=st.floats(-2.0, 2.0, allow_nan=False))
@settings(max_examples=60, deadline=None)
# Replicates tied with the estimate up to rounding once moved float noise into z0 (found by hypothesis).
@example(data=([0.5, 0.5, 0.5], [0.24278367630383918, 0.5, 0.501], [1, 1, 1]), shift=-0.16717195221154307)
@example(data=([1.0, 0.5, 1.0], [1.0, 0.501, 1.2572163236961609], [1, 1, 1]), shift=-1.0)
def test_shifting_subject_losses_by_c_multiplies_ratio_by_exp_c(
    data: tuple[list[float], list[float], list[int]], shift: float
) -> None:
    base, subj, tokens = data
    before = summarize_pair(base, subj, tokens, **FAST)
    after = summarize_pair(base, [s + shift for s in subj], tokens, **FAST)
    assert after.ratio == pytest.approx(before.ratio * math.exp(shift), rel=1e-9)
    # The interval is equivariant too: the same draws, every Δ moved by c.
    assert after.ci[0] == pytest.approx(before.ci[0] * math.exp(shift), rel=1e-6)
    assert after.ci[1] == pytest.approx(before.ci[1] * math.exp(shift), rel=1e-6)


@given(data=paired(), scale=st.integers(2, 50))
@settings(max_examples=40, deadline=None)
def test_scaling_all_token_weights_changes_nothing(
    data: tuple[list[float], list[float], list[int]], scale: int
) -> None:
    base, subj, tokens = data
    one = summarize_pair(base, subj, tokens, **FAST)
    many = summarize_pair(base, subj, [t * scale for t in tokens], **FAST)
    assert many.ratio == pytest.approx(one.ratio, rel=1e-12)
    assert many.ci == pytest.approx(one.ci, rel=1e-9)


@given(data=paired())
@settings(max_examples=40, deadline=None)
def test_point_estimate_is_token_weighted(data: tuple[list[float], list[float], list[int]]) -> None:
    base, subj, tokens = data
    summary = summarize_pair(base, subj, tokens, **FAST)
    # A window of weight w counts like w windows of weight 1.
    expanded = [s - b for s, b, t in zip(subj, base, tokens) for _ in range(t)]
    assert summary.delta == pytest.approx(float(np.mean(expanded)), rel=1e-9, abs=1e-12)
    assert summary.tokens == sum(tokens)


@given(data=paired(), seed=st.integers(0, 2**31))
@settings(max_examples=30, deadline=None)
def test_same_seed_same_interval_and_seeds_matter(
    data: tuple[list[float], list[float], list[int]], seed: int
) -> None:
    base, subj, tokens = data
    first = summarize_pair(base, subj, tokens, seed=seed, **FAST)
    again = summarize_pair(base, subj, tokens, seed=seed, **FAST)
    assert first == again


def test_different_seeds_give_different_draws() -> None:
    rng = np.random.default_rng(1)
    deltas = rng.normal(0.05, 0.1, 64)
    a = bca_interval(deltas, np.full(64, 127.0), replicates=400, seed=1)
    b = bca_interval(deltas, np.full(64, 127.0), replicates=400, seed=2)
    assert (a.lo, a.hi) != (b.lo, b.hi)


def test_bca_bounds_are_sensible_for_normal_data() -> None:
    rng = np.random.default_rng(7)
    n = 200
    deltas = rng.normal(0.1, 0.2, n)
    interval = bca_interval(deltas, np.full(n, 511.0), replicates=2000, alpha=0.05, seed=3)
    se = deltas.std(ddof=1) / math.sqrt(n)
    mean = float(deltas.mean())
    assert interval.method == "bca"
    # Close to the normal-theory interval: the bias correction and acceleration are small here.
    assert interval.lo == pytest.approx(mean - 1.96 * se, abs=0.5 * se)
    assert interval.hi == pytest.approx(mean + 1.96 * se, abs=0.5 * se)
    assert abs(interval.z0) < 0.2
    assert abs(interval.acceleration) < 0.05


def test_wider_interval_at_smaller_alpha() -> None:
    rng = np.random.default_rng(11)
    deltas = rng.normal(0.0, 0.3, 50)
    w = np.full(50, 100.0)
    narrow = bca_interval(deltas, w, replicates=1000, alpha=0.2, seed=0)
    wide = bca_interval(deltas, w, replicates=1000, alpha=0.01, seed=0)
    assert wide.lo < narrow.lo
    assert wide.hi > narrow.hi


def test_skewed_data_gets_nonzero_acceleration_and_asymmetric_bounds() -> None:
    rng = np.random.default_rng(5)
    deltas = rng.exponential(0.2, 80)
    w = np.full(80, 64.0)
    a = weighted_jackknife_acceleration(deltas, w)
    assert a > 0.0
    interval = bca_interval(deltas, w, replicates=2000, seed=0)
    mean = weighted_mean(deltas, w)
    assert interval.hi - mean > mean - interval.lo  # right-skewed data: longer upper arm


def test_acceleration_matches_unweighted_jackknife_for_equal_weights() -> None:
    rng = np.random.default_rng(2)
    x = rng.gamma(2.0, 1.0, 30)
    loo = np.array([np.delete(x, i).mean() for i in range(x.size)])
    d = loo.mean() - loo
    expected = float((d**3).sum() / (6 * (d**2).sum() ** 1.5))
    assert weighted_jackknife_acceleration(x, np.ones(30)) == pytest.approx(expected, rel=1e-9)


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="same length"):
        weighted_mean([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="positive"):
        weighted_mean([1.0], [0.0])
    with pytest.raises(ValueError, match="finite"):
        bca_interval([1.0, float("nan"), 2.0], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="alpha"):
        bca_interval([1.0, 2.0], [1.0, 1.0], alpha=1.5)


def test_safe_exp_never_overflows() -> None:
    assert math.isfinite(safe_exp(1e6))
    assert safe_exp(0.0) == 1.0
