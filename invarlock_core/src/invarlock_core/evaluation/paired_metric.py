"""The paired primary metric: token-weighted Δlogloss, its ratio and a BCa bootstrap interval.

Baseline and subject are scored on identical windows. Window ``i`` has ``w_i`` scored tokens and
mean negative log-likelihoods ``b_i`` (baseline) and ``s_i`` (subject). With ``Δ_i = s_i − b_i``:

* ``delta = Σ w_i Δ_i / Σ w_i`` (token-weighted mean Δlogloss),
* ``ratio = exp(delta)`` = subject perplexity / baseline perplexity,
* the interval is a paired BCa bootstrap of ``delta``: each replicate draws ``n`` windows with
  probability ``w_i / Σ w`` (token-weighted resampling) and averages their ``Δ``; the bias
  correction ``z0`` comes from the replicates and the acceleration ``a`` from a weighted
  jackknife; the ratio interval is ``exp`` of the ``delta`` bounds.

Everything here is NumPy only (no torch), so :mod:`invarlock_core.report.verification` can recompute
a report's numbers without an ML stack. The random draws use PCG64 ``random()`` doubles and an
inverse-CDF lookup, so the same seed gives the same interval on every NumPy version.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import attrs
import numpy as np
import numpy.typing as npt

__all__ = [
    "BootstrapInterval",
    "PairedSummary",
    "bca_interval",
    "safe_exp",
    "summarize_pair",
    "weighted_jackknife_acceleration",
    "weighted_mean",
]

FloatArray = npt.NDArray[np.float64]
_NORMAL = NormalDist()
_CHUNK = 256  # replicates drawn per block, to bound memory for large window counts
_MAX_LOG = 700.0  # exp(700) ~ 1e304: ratios of absurdly damaged subjects stay finite JSON numbers


def safe_exp(value: float) -> float:
    """``exp(value)`` capped at ``exp(700)`` so that a ratio is always a finite float."""
    return math.exp(min(value, _MAX_LOG))


@attrs.frozen
class BootstrapInterval:
    """A BCa interval of the weighted mean Δlogloss (``lo``/``hi`` in log space)."""

    lo: float
    hi: float
    z0: float
    acceleration: float
    replicates: int
    alpha: float
    seed: int
    method: str
    """``"bca"``, ``"percentile"`` (BCa undefined, e.g. every replicate on one side) or
    ``"degenerate"`` (all Δ equal: the interval is the point)."""


@attrs.frozen
class PairedSummary:
    """The paired primary metric over one set of windows."""

    windows: int
    tokens: int
    baseline_nll: float
    subject_nll: float
    delta: float
    ratio: float
    ci: tuple[float, float]
    interval: BootstrapInterval
    delta_q95: float
    """95th percentile of the per-window Δ (a tail diagnostic, not a gate)."""


def _as_arrays(
    values: Sequence[float] | FloatArray, weights: Sequence[float] | FloatArray
) -> tuple[FloatArray, FloatArray]:
    x = np.asarray(values, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if x.ndim != 1 or x.shape != w.shape:
        raise ValueError("values and weights must be 1-D arrays of the same length")
    if x.size == 0:
        raise ValueError("at least one window is needed")
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError("weights must be finite and positive")
    return x, w


def weighted_mean(
    values: Sequence[float] | FloatArray, weights: Sequence[float] | FloatArray
) -> float:
    """``Σ w x / Σ w``."""
    x, w = _as_arrays(values, weights)
    return float(np.dot(w, x) / w.sum())


def weighted_jackknife_acceleration(
    values: Sequence[float] | FloatArray, weights: Sequence[float] | FloatArray
) -> float:
    """BCa acceleration from a weighted jackknife of the weighted mean.

    ``θ_(i)`` is the weighted mean without window ``i``; with ``d_i = θ̄ − θ_(i)``, ``θ̄`` their
    weighted mean and ``p_i = n w_i / Σ w`` (weights normalised to mean 1, so that scaling every
    weight changes nothing and equal weights give the classic jackknife),
    ``a = Σ p_i d_i³ / (6 (Σ p_i d_i²)^{3/2})``. Zero when undefined.
    """
    x, w = _as_arrays(values, weights)
    if x.size < 3:
        return 0.0
    total = w.sum()
    loo = (np.dot(w, x) - w * x) / (total - w)
    centre = float(np.dot(w, loo) / total)
    d = centre - loo
    p = w * (x.size / total)
    denom = float(np.dot(p, d * d))
    if denom <= 0.0 or not math.isfinite(denom):
        return 0.0
    a = float(np.dot(p, d**3)) / (6.0 * denom**1.5)
    return a if math.isfinite(a) else 0.0


def _replicate_means(x: FloatArray, w: FloatArray, replicates: int, seed: int) -> FloatArray:
    # cumsum then divide: for integer token counts every entry is an exactly rounded k / T,
    # so scaling all weights leaves the draws bit-for-bit unchanged.
    cdf = np.cumsum(w) / w.sum()
    cdf[-1] = 1.0
    rng = np.random.Generator(np.random.PCG64(seed))
    n = x.size
    out = np.empty(replicates, dtype=np.float64)
    for start in range(0, replicates, _CHUNK):
        count = min(_CHUNK, replicates - start)
        u = rng.random((count, n))
        idx = np.searchsorted(cdf, u, side="right")
        np.minimum(idx, n - 1, out=idx)
        out[start : start + count] = x[idx].mean(axis=1)
    return out


def bca_interval(
    values: Sequence[float] | FloatArray,
    weights: Sequence[float] | FloatArray,
    *,
    replicates: int = 1200,
    alpha: float = 0.05,
    seed: int = 0,
) -> BootstrapInterval:
    """Two-sided ``1 − alpha`` BCa interval of the weighted mean of ``values``.

    The interval always contains the point estimate (BCa can exclude it only for degenerate,
    very small samples; the bound is then moved to the point estimate).
    """
    if replicates < 1:
        raise ValueError("replicates must be at least 1")
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must lie in (0, 1)")
    x, w = _as_arrays(values, weights)
    if not np.all(np.isfinite(x)):
        raise ValueError("values must be finite")
    theta = float(np.dot(w, x) / w.sum())
    if float(x.max() - x.min()) <= 1e-15 * max(1.0, abs(theta)):
        return BootstrapInterval(theta, theta, 0.0, 0.0, replicates, alpha, seed, "degenerate")
    boot = np.sort(_replicate_means(x, w, replicates, seed))
    # Replicates within rounding of θ̂ are ties (half below, half above): an exact `==` would make
    # z0, and so the interval, depend on float noise (e.g. after shifting every Δ by a constant).
    tie = 1e-12 * max(1.0, float(np.abs(x).max()))
    ties = float(np.count_nonzero(np.abs(boot - theta) <= tie))
    below = float(np.count_nonzero(boot < theta - tie)) + 0.5 * ties
    p0 = below / replicates
    a = weighted_jackknife_acceleration(x, w)
    z_lo, z_hi = _NORMAL.inv_cdf(alpha / 2.0), _NORMAL.inv_cdf(1.0 - alpha / 2.0)
    method = "bca"
    if 0.0 < p0 < 1.0:
        z0 = _NORMAL.inv_cdf(p0)
        levels = []
        for z in (z_lo, z_hi):
            denom = 1.0 - a * (z0 + z)
            if denom <= 0.0:
                method = "percentile"
                break
            levels.append(_NORMAL.cdf(z0 + (z0 + z) / denom))
    else:
        z0 = 0.0
        method = "percentile"
    if method == "percentile":
        levels = [alpha / 2.0, 1.0 - alpha / 2.0]
    lo, hi = (float(v) for v in np.quantile(boot, levels))
    return BootstrapInterval(
        min(lo, theta), max(hi, theta), z0, a, replicates, alpha, seed, method
    )


def summarize_pair(
    baseline_nll: Sequence[float] | FloatArray,
    subject_nll: Sequence[float] | FloatArray,
    tokens: Sequence[int] | npt.NDArray[np.int64],
    *,
    replicates: int = 1200,
    alpha: float = 0.05,
    seed: int = 0,
) -> PairedSummary:
    """The paired primary metric of per-window mean NLLs (all values must be finite)."""
    b = np.asarray(baseline_nll, dtype=np.float64)
    s = np.asarray(subject_nll, dtype=np.float64)
    w = np.asarray(tokens, dtype=np.float64)
    if b.shape != s.shape:
        raise ValueError("baseline and subject must be scored on the same windows")
    delta_i = s - b
    interval = bca_interval(delta_i, w, replicates=replicates, alpha=alpha, seed=seed)
    delta = weighted_mean(delta_i, w)
    return PairedSummary(
        windows=int(b.size),
        tokens=int(w.sum()),
        baseline_nll=weighted_mean(b, w),
        subject_nll=weighted_mean(s, w),
        delta=delta,
        ratio=safe_exp(delta),
        ci=(safe_exp(interval.lo), safe_exp(interval.hi)),
        interval=interval,
        delta_q95=float(np.quantile(delta_i, 0.95)),
    )
