"""The variance guard's branch ratio in plain Python equals the numpy formulation it replaced:
winsorized per-window ratios, ⌈√n⌉ chunks, the median of the chunk means."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invarlock_guards.tiers import guard_settings
from invarlock_guards.variance import VarianceSettings, branch_ratio

SETTINGS = VarianceSettings.from_table(guard_settings("variance", "balanced", {}))


def _numpy_ratio(baseline: list[float], subject: list[float], config: VarianceSettings) -> float:
    b = np.asarray(baseline, dtype=np.float64)
    s = np.asarray(subject, dtype=np.float64)
    if b.shape != s.shape or b.size == 0 or not np.all(np.isfinite(s)):
        return math.nan
    usable = b > 0
    if not usable.any():
        return 1.0 if np.all(s == 0) else math.inf
    q = s[usable] / b[usable]
    low, high = np.quantile(q, [config.winsor_low, config.winsor_high])
    q = np.clip(q, low, high)
    chunks = np.array_split(q, max(1, math.ceil(math.sqrt(q.size))))
    return float(np.median([chunk.mean() for chunk in chunks if chunk.size]))


_VALUE = st.one_of(
    st.floats(1e-6, 1e6), st.just(0.0), st.floats(-10.0, 0.0), st.sampled_from([math.nan])
)


@settings(max_examples=300)
@given(
    pairs=st.lists(st.tuples(_VALUE, st.floats(0.0, 1e6)), min_size=1, max_size=200),
    winsor=st.tuples(st.floats(0.0, 0.5), st.floats(0.5, 1.0)),
)
def test_branch_ratio_equals_the_numpy_formulation(
    pairs: list[tuple[float, float]], winsor: tuple[float, float]
) -> None:
    import attrs

    config = attrs.evolve(SETTINGS, winsor_low=winsor[0], winsor_high=winsor[1])
    baseline = [b for b, _s in pairs]
    subject = [s for _b, s in pairs]
    ours, reference = (
        branch_ratio(baseline, subject, config),
        _numpy_ratio(baseline, subject, config),
    )
    if math.isnan(reference):
        assert math.isnan(ours)
    else:
        assert ours == pytest.approx(reference, rel=1e-12, abs=1e-300)


def test_branch_ratio_edge_cases() -> None:
    assert math.isnan(branch_ratio([1.0, 2.0], [1.0], SETTINGS))
    assert math.isnan(branch_ratio([], [], SETTINGS))
    assert math.isnan(branch_ratio([1.0, 1.0], [1.0, math.inf], SETTINGS))
    assert branch_ratio([0.0, -1.0], [0.0, 0.0], SETTINGS) == 1.0
    assert branch_ratio([0.0, 0.0], [0.0, 3.0], SETTINGS) == math.inf
    assert branch_ratio([2.0] * 8, [8.0] * 8, SETTINGS) == 4.0
