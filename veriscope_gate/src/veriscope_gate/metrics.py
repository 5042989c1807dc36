"""Representation metrics computed on a fixed random sketch of hidden states.

The probe (see :mod:`veriscope_gate.sketch`) standardises a layer's hidden states with a running
EMA, projects them with a fixed Gaussian Johnson–Lindenstrauss matrix to ``d`` dimensions and
computes, on the training device, the covariance eigenvalues ``λ_1 ≥ … ≥ λ_d`` and the absolute
cosine similarity of randomly sampled token pairs. Only those small arrays reach the host, as a
:class:`Sketch`; every metric is a function of a :class:`Sketch`.

Built-in formulas (``p_i = λ_i / Σλ``):

* ``var_out_k = 1 − Σ_{i≤k} λ_i / Σλ`` with ``k = round(√d)``: variance outside the top-k
  directions (falls towards 0 when the representation collapses onto few directions).
* ``eff_dim = (Σλ)² / Σλ²``: participation ratio, in ``[1, d]``.
* ``rankme = exp(−Σ p_i ln p_i)``: exponential of the spectral entropy, in ``[1, d]``.
* ``cos_disp = mean |cos(z_a, z_b)|`` over random token pairs: rises towards 1 when tokens
  collapse onto one direction.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import attrs
import numpy as np
import numpy.typing as npt

__all__ = [
    "BUILTIN_WEIGHTS",
    "CosDisp",
    "EffDim",
    "Metric",
    "RankMe",
    "Sketch",
    "VarOutK",
    "builtin_metrics",
    "sketch_from_array",
]

FloatArray = npt.NDArray[np.float64]


@attrs.frozen(eq=False)
class Sketch:
    """What a probe hands to metrics: covariance eigenvalues (descending) and pair |cos| samples."""

    eigenvalues: FloatArray
    pair_abs_cos: FloatArray
    dim: int
    tokens: int


@runtime_checkable
class Metric(Protocol):
    """A representation metric: a name, a declared calibration range and a formula."""

    @property
    def name(self) -> str: ...

    @property
    def summary(self) -> str: ...

    @property
    def calibration_range(self) -> tuple[float, float]:
        """Values are mapped linearly from this range onto [0, 1] and clipped (the transport)."""
        ...

    def compute(self, sketch: Sketch) -> float:
        """The metric's value on one probe; NaN when it cannot be computed."""
        ...


def _positive(eigenvalues: FloatArray) -> FloatArray:
    lam = np.clip(np.asarray(eigenvalues, dtype=np.float64), 0.0, None)
    return lam


@attrs.frozen
class VarOutK:
    """``1 − Σ_{i≤k} λ_i / Σλ``, ``k = round(√d)``."""

    dim: int = 64
    name: str = "var_out_k"
    summary: str = "share of sketch variance outside the top round(sqrt(d)) directions"

    @property
    def calibration_range(self) -> tuple[float, float]:
        return (0.0, 1.0)

    def compute(self, sketch: Sketch) -> float:
        lam = np.sort(_positive(sketch.eigenvalues))[::-1]
        total = float(lam.sum())
        if total <= 0.0 or not math.isfinite(total):
            return math.nan
        k = max(1, round(math.sqrt(sketch.dim)))
        return float(1.0 - lam[:k].sum() / total)


@attrs.frozen
class EffDim:
    """Participation ratio ``(Σλ)² / Σλ²``."""

    dim: int = 64
    name: str = "eff_dim"
    summary: str = "participation ratio (sum lambda)^2 / sum lambda^2 of the sketch covariance"

    @property
    def calibration_range(self) -> tuple[float, float]:
        return (1.0, float(self.dim))

    def compute(self, sketch: Sketch) -> float:
        lam = _positive(sketch.eigenvalues)
        sq = float((lam**2).sum())
        if sq <= 0.0 or not math.isfinite(sq):
            return math.nan
        return float(lam.sum() ** 2 / sq)


@attrs.frozen
class RankMe:
    """``exp`` of the Shannon entropy of the normalised eigenvalues."""

    dim: int = 64
    name: str = "rankme"
    summary: str = "exp(entropy of lambda / sum lambda): smooth effective rank"

    @property
    def calibration_range(self) -> tuple[float, float]:
        return (1.0, float(self.dim))

    def compute(self, sketch: Sketch) -> float:
        lam = _positive(sketch.eigenvalues)
        total = float(lam.sum())
        if total <= 0.0 or not math.isfinite(total):
            return math.nan
        p = lam[lam > 0] / total
        return float(math.exp(-float((p * np.log(p)).sum())))


@attrs.frozen
class CosDisp:
    """Mean absolute cosine similarity over random token pairs."""

    name: str = "cos_disp"
    summary: str = "mean |cos| over random token pairs of the sketch (1 = collapsed)"

    @property
    def calibration_range(self) -> tuple[float, float]:
        return (0.0, 1.0)

    def compute(self, sketch: Sketch) -> float:
        values = np.asarray(sketch.pair_abs_cos, dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            return math.nan
        return float(values.mean())


BUILTIN_WEIGHTS: dict[str, float] = {
    "var_out_k": 0.35,
    "eff_dim": 0.35,
    "rankme": 0.20,
    "cos_disp": 0.10,
}
"""The tuned_v0 aggregation weights of the four built-in metrics."""


def builtin_metrics(dim: int = 64) -> tuple[Metric, ...]:
    """The four built-in metrics for a sketch of dimension ``dim``."""
    return (VarOutK(dim=dim), EffDim(dim=dim), RankMe(dim=dim), CosDisp())


def sketch_from_array(
    z: npt.ArrayLike, *, pairs: int = 256, seed: int = 0
) -> Sketch:
    """Build a :class:`Sketch` from already projected rows ``z`` (tokens × d) with numpy.

    The torch probe computes the same quantities on the training device; this is the host-side
    reference used by tests and by callers that already hold numpy data.
    """
    arr = np.asarray(z, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 2:
        raise ValueError("a sketch needs a 2-D array with at least two rows")
    centred = arr - arr.mean(axis=0, keepdims=True)
    cov = centred.T @ centred / (arr.shape[0] - 1)
    eig = np.sort(np.linalg.eigvalsh(cov))[::-1]
    rng = np.random.default_rng(seed)
    a = rng.integers(0, arr.shape[0], size=pairs)
    b = (a + rng.integers(1, arr.shape[0], size=pairs)) % arr.shape[0]
    na = np.linalg.norm(arr[a], axis=1)
    nb = np.linalg.norm(arr[b], axis=1)
    denom = np.where(na * nb > 0, na * nb, np.nan)
    cos = np.abs((arr[a] * arr[b]).sum(axis=1) / denom)
    return Sketch(eigenvalues=eig, pair_abs_cos=cos, dim=arr.shape[1], tokens=arr.shape[0])
