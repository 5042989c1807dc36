"""Finite-window divergence math: transport, histogram total variation, ε terms, permutation null.

* Transport: a metric value ``x`` with declared range ``[lo, hi]`` maps to
  ``u = clip((x − lo)/(hi − lo), 0, 1)``.
* Histogram: ``bins`` equal bins on [0, 1] (``u = 1`` falls in the last bin).
* TV: ``½ Σ |p − q|`` between the normalised histograms of the past and recent windows.
* ``eps_stat(n) = min(1, √((ln max(2, bins) + ln(1/α)) / (2n)))``.
* Permutation null: the past and recent snapshots are pooled and their window labels permuted
  ``B`` times with a deterministic generator; the p-value of an observed statistic ``s`` is
  ``(1 + #{s_b ≥ s}) / (B + 1)``, which is a valid (super-uniform) p-value under exchangeability
  at any window size and bin count — the reason our per-check false-alarm rate stays at the
  configured level where a fixed ε threshold does not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs
import numpy as np
import numpy.typing as npt

__all__ = [
    "PermutationResult",
    "bin_indices",
    "eps_stat",
    "histogram_tv",
    "permutation_test",
    "transport",
    "wasserstein1",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_TIE = 1e-12


def transport(values: npt.ArrayLike, lo: float, hi: float) -> FloatArray:
    """Map values onto [0, 1] through the calibration range ``[lo, hi]`` and clip (NaN stays NaN)."""
    if not hi > lo:
        raise ValueError(f"empty calibration range [{lo}, {hi}]")
    arr = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.clip((arr - lo) / (hi - lo), 0.0, 1.0)


def bin_indices(u: npt.ArrayLike, bins: int) -> IntArray:
    """Bin index in ``0..bins-1`` of each transported value; ``-1`` for non-finite values."""
    arr = np.asarray(u, dtype=np.float64)
    finite = np.isfinite(arr)
    idx = np.full(arr.shape, -1, dtype=np.int64)
    idx[finite] = np.minimum((arr[finite] * bins).astype(np.int64), bins - 1)
    return idx


def histogram_tv(past: npt.ArrayLike, recent: npt.ArrayLike, bins: int = 16) -> float | None:
    """TV between the ``bins``-bin histograms of two samples already on [0, 1].

    Non-finite values are dropped. Both sides empty → 0.0; exactly one side empty → ``None``
    (not evaluable).
    """
    a = bin_indices(past, bins)
    b = bin_indices(recent, bins)
    a = a[a >= 0]
    b = b[b >= 0]
    if a.size == 0 and b.size == 0:
        return 0.0
    if a.size == 0 or b.size == 0:
        return None
    p = np.bincount(a, minlength=bins) / a.size
    q = np.bincount(b, minlength=bins) / b.size
    return float(0.5 * np.abs(p - q).sum())


def wasserstein1(past: npt.ArrayLike, recent: npt.ArrayLike) -> float | None:
    """Earth mover's distance ``∫|F_past − F_recent|`` between two samples on [0, 1] (NaN dropped).

    This is the *magnitude* of a shift in calibrated-range units, which TV alone does not see: a
    narrow distribution sitting on a bin edge can move by 1% of the range and change TV by 0.5.
    """
    a = np.sort(np.asarray(past, dtype=np.float64))
    b = np.sort(np.asarray(recent, dtype=np.float64))
    a = a[np.isfinite(a)]
    b = b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        return None
    grid = np.concatenate([a, b])
    grid.sort()
    widths = np.diff(grid)
    fa = np.searchsorted(a, grid[:-1], side="right") / a.size
    fb = np.searchsorted(b, grid[:-1], side="right") / b.size
    return float(np.sum(np.abs(fa - fb) * widths))


def eps_stat(n: int, bins: int = 16, alpha: float = 0.05) -> float:
    """Finite-sample ε for ``n`` samples per side: ``min(1, √((ln max(2,bins) + ln(1/α)) / 2n))``."""
    if n <= 0:
        return 1.0
    return min(1.0, math.sqrt((math.log(max(2, bins)) + math.log(1.0 / alpha)) / (2.0 * n)))


@attrs.frozen
class PermutationResult:
    """Observed per-metric TVs and aggregate, with their permutation p-values and null quantile."""

    per_metric_tv: dict[str, float]
    per_metric_p: dict[str, float]
    aggregate: float
    aggregate_p: float
    aggregate_null_quantile: float
    permutations: int


def _window_stats(
    onehots: Sequence[FloatArray],
    finite: Sequence[FloatArray],
    labels: FloatArray,
    weights: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Per-metric TV (P × M) and weighted aggregate (P,) for label rows ``labels`` (P × N)."""
    tvs = np.empty((labels.shape[0], len(onehots)), dtype=np.float64)
    for m, (h, f) in enumerate(zip(onehots, finite)):
        total_counts = h.sum(axis=0)
        n_total = f.sum()
        recent_counts = labels @ h
        n_recent = labels @ f
        n_past = n_total - n_recent
        past_counts = total_counts[None, :] - recent_counts
        with np.errstate(invalid="ignore", divide="ignore"):
            p = past_counts / n_past[:, None]
            q = recent_counts / n_recent[:, None]
            tv = 0.5 * np.abs(p - q).sum(axis=1)
        tv = np.where((n_past == 0) | (n_recent == 0), np.nan, tv)
        tvs[:, m] = tv
    agg = (np.nan_to_num(tvs, nan=0.0) * weights[None, :]).sum(axis=1)
    return tvs, agg


def permutation_test(
    past: dict[str, FloatArray],
    recent: dict[str, FloatArray],
    weights: dict[str, float],
    *,
    bins: int = 16,
    permutations: int = 199,
    quantile: float = 0.99,
    seed: int | Sequence[int] = 0,
) -> PermutationResult:
    """Joint label-permutation test of the weighted-mean TV over the given metrics.

    ``past[m]`` and ``recent[m]`` are transported values of metric ``m`` aligned by snapshot (NaN
    where a snapshot lacks the metric); every metric must have at least one finite value on each
    side. ``weights`` are renormalised over the given metrics.
    """
    names = sorted(past)
    n_past = len(next(iter(past.values()))) if past else 0
    n_recent = len(next(iter(recent.values()))) if recent else 0
    w = np.array([abs(weights[m]) for m in names], dtype=np.float64)
    w = w / w.sum() if w.sum() > 0 else np.full(len(names), 1.0 / max(1, len(names)))
    onehots: list[FloatArray] = []
    finite: list[FloatArray] = []
    for m in names:
        idx = bin_indices(np.concatenate([past[m], recent[m]]), bins)
        h = np.zeros((idx.size, bins), dtype=np.float64)
        ok = idx >= 0
        h[np.nonzero(ok)[0], idx[ok]] = 1.0
        onehots.append(h)
        finite.append(ok.astype(np.float64))
    n = n_past + n_recent
    observed = np.zeros((1, n), dtype=np.float64)
    observed[0, n_past:] = 1.0
    obs_tv, obs_agg = _window_stats(onehots, finite, observed, w)
    rng = np.random.default_rng(seed)
    perms = np.argsort(rng.random((permutations, n)), axis=1) < n_recent
    null_tv, null_agg = _window_stats(onehots, finite, perms.astype(np.float64), w)
    agg = float(obs_agg[0])
    agg_p = (1.0 + float(np.sum(null_agg >= agg - _TIE))) / (permutations + 1.0)
    per_p: dict[str, float] = {}
    per_tv: dict[str, float] = {}
    for m_i, m in enumerate(names):
        observed_m = float(obs_tv[0, m_i])
        col = np.nan_to_num(null_tv[:, m_i], nan=0.0)
        per_tv[m] = observed_m
        per_p[m] = (1.0 + float(np.sum(col >= observed_m - _TIE))) / (permutations + 1.0)
    q = float(np.quantile(null_agg, quantile, method="higher")) if permutations else math.nan
    return PermutationResult(
        per_metric_tv=per_tv,
        per_metric_p=per_p,
        aggregate=agg,
        aggregate_p=agg_p,
        aggregate_null_quantile=q,
        permutations=permutations,
    )
