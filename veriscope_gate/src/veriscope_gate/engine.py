"""The gate engine: finite-window divergence checks (D_W) with a calibrated null.

Every ``gate_window`` iterations :meth:`GateEngine.check` compares the probes of the *past*
window ``(t − 2W, t − W]`` with the *recent* window ``(t − W, t]``:

1. each metric is transported onto [0, 1] through its declared calibration range; non-finite
   values are dropped; a metric is evaluable when both windows hold at least ``min_evidence``
   finite values (evidence = min of the two counts);
2. ``TV_m`` is the total variation between 16-bin histograms; ``worst_DW`` is the |w|-weighted
   mean of ``TV_m`` renormalised over evaluable metrics;
3. ``eps_eff = max(0, ε + eps_sens − min(eps_stat, cap_frac·ε))`` (the published rule);
4. **calibrated null** (our addition): the window labels are permuted ``null_permutations`` times
   (deterministic per iteration); the drift exceedance additionally needs the permutation p-value
   of ``worst_DW`` to be ``≤ null_alpha``, which bounds the per-check false-alarm rate by
   ``null_alpha`` at whatever window size and bin count are used;
5. consensus: at least ``min(min_metrics_exceeding, evaluable)`` metrics exceed, i.e. have
   ``TV_m > eps_eff`` **and** moved by at least ``min_shift`` (earth mover's distance between the
   two windows in calibrated-range units; our addition: TV alone flags a 1% move of a narrow
   distribution that sits on a bin edge);
6. loss gain: ``gain_bits`` = mean over the recent window of ``(EWMA(loss) − loss)/ln 2``
   (EWMA α = 0.1); it fails when ``gain_bits + gain_z·se < gain_thresh``;
7. optional regime anchoring: after ``warmup + 2W`` the recent windows of clean checks (pass, and
   ``worst_DW ≤ 0.08`` or permutation p ≥ 0.1 — at n = 20 sampling noise alone often exceeds
   0.08) are pooled; with ≥ 5 clean windows and ≥ 50 samples per metric the pool is frozen as the
   reference and later windows are also tested against it (threshold 1.5·ε). Before a reference
   exists, drift-only failures are demoted to warn;
8. the policy turns drift/gain/regime outcomes into pass/warn/fail; a check that cannot be
   evaluated is ``skip`` and leaves the persistence streak untouched.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from veriscope_gate.controls import GateControls
from veriscope_gate.divergence import (
    eps_stat,
    histogram_tv,
    permutation_test,
    transport,
    wasserstein1,
)
from veriscope_gate.errors import MetricError
from veriscope_gate.records import Audit, Decision, GateRecord, flags_for

__all__ = ["ANCHOR_CLEAN_DW", "ANCHOR_MIN_SAMPLES", "ANCHOR_MIN_WINDOWS", "GateEngine", "Snapshot"]

EWMA_ALPHA = 0.1
ANCHOR_CLEAN_DW = 0.08
ANCHOR_CLEAN_P = 0.1
ANCHOR_MIN_WINDOWS = 5
ANCHOR_MIN_SAMPLES = 50
ANCHOR_EPS_FACTOR = 1.5


@attrs.frozen
class Snapshot:
    """One probe: metric values at an iteration, the training loss and its gain in bits."""

    iter: int
    values: dict[str, float]
    loss: float | None = None
    gain_bits: float | None = None


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


class GateEngine:
    """Stateful gate over a stream of probes; :meth:`state` / :meth:`load_state` resume it."""

    def __init__(
        self, controls: GateControls, ranges: Mapping[str, tuple[float, float]]
    ) -> None:
        unknown = sorted(m for m in controls.weights if m not in ranges)
        if unknown:
            raise MetricError(
                f"gate weights name metric(s) with no declared range: {', '.join(unknown)}"
            )
        for name, (lo, hi) in ranges.items():
            if not hi > lo:
                raise MetricError(f"metric {name!r} has an empty calibration range [{lo}, {hi}]")
        self.controls = controls
        self.ranges = {m: (float(lo), float(hi)) for m, (lo, hi) in ranges.items()}
        self.weights = {m: float(w) for m, w in controls.weights.items() if w != 0}
        self._snapshots: list[Snapshot] = []
        self._ewma: float | None = None
        self._streak = 0
        self._anchor_pool: dict[str, list[float]] = {}
        self._clean_windows = 0
        self._anchor_frozen = False

    # -- probes ---------------------------------------------------------------------------
    def record(self, iteration: int, values: Mapping[str, float], loss: float | None = None) -> Snapshot:
        """Record one probe; returns the stored :class:`Snapshot` (with its loss gain)."""
        gain: float | None = None
        if _finite(loss):
            assert loss is not None
            if self._ewma is not None:
                gain = (self._ewma - loss) / math.log(2.0)
                self._ewma = EWMA_ALPHA * loss + (1.0 - EWMA_ALPHA) * self._ewma
            else:
                self._ewma = loss
        snap = Snapshot(
            iter=int(iteration),
            values={k: float(v) for k, v in values.items()},
            loss=float(loss) if loss is not None else None,
            gain_bits=gain,
        )
        self._snapshots.append(snap)
        horizon = int(iteration) - 2 * self.controls.gate_window
        if len(self._snapshots) > 4 * self.controls.window_snapshots:
            self._snapshots = [s for s in self._snapshots if s.iter > horizon]
        return snap

    # -- checks ---------------------------------------------------------------------------
    def _skip(self, iteration: int, reason: str, evidence: int = 0,
              not_evaluable: dict[str, str] | None = None) -> GateRecord:
        audit = Audit(
            evaluated=False,
            reason=reason,
            policy=self.controls.policy,
            worst_DW=None,
            eps_eff=None,
            per_metric_tv={},
            evidence_total=evidence,
            min_evidence=self.controls.min_evidence,
            not_evaluable=not_evaluable or {},
            streak=self._streak,
        )
        return GateRecord(iter=iteration, decision="skip", audit=audit)

    def _column(self, snaps: list[Snapshot], metric: str) -> np.ndarray[Any, np.dtype[np.float64]]:
        lo, hi = self.ranges[metric]
        raw = [s.values.get(metric, math.nan) for s in snaps]
        return transport(np.asarray(raw, dtype=np.float64), lo, hi)

    def check(self, iteration: int) -> GateRecord:
        """Decide the gate at ``iteration`` from the probes recorded so far."""
        c = self.controls
        if iteration < c.gate_warmup_iters:
            return self._skip(iteration, "warmup")
        w = c.gate_window
        past = [s for s in self._snapshots if iteration - 2 * w < s.iter <= iteration - w]
        recent = [s for s in self._snapshots if iteration - w < s.iter <= iteration]
        if not past or not recent:
            return self._skip(iteration, "insufficient_evidence")

        past_cols: dict[str, np.ndarray[Any, np.dtype[np.float64]]] = {}
        recent_cols: dict[str, np.ndarray[Any, np.dtype[np.float64]]] = {}
        evidence: dict[str, int] = {}
        not_evaluable: dict[str, str] = {}
        for m in sorted(self.weights):
            pc, rc = self._column(past, m), self._column(recent, m)
            n_p, n_r = int(np.isfinite(pc).sum()), int(np.isfinite(rc).sum())
            if n_p == 0 and n_r == 0:
                not_evaluable[m] = "metric_unavailable"
            elif n_p == 0 or n_r == 0:
                not_evaluable[m] = "one_side_empty"
            elif min(n_p, n_r) < c.min_evidence:
                not_evaluable[m] = "insufficient_evidence"
            else:
                past_cols[m], recent_cols[m] = pc, rc
                evidence[m] = min(n_p, n_r)
        if not evidence:
            reasons = set(not_evaluable.values())
            reason = "metric_unavailable" if reasons == {"metric_unavailable"} else "insufficient_evidence"
            return self._skip(iteration, reason, 0, not_evaluable)

        wsum = sum(abs(self.weights[m]) for m in evidence)
        wn = {m: abs(self.weights[m]) / wsum for m in evidence}
        seed = (c.seed, int(iteration))
        per_p: dict[str, float] = {}
        p_value: float | None = None
        null_q: float | None = None
        if c.null_enabled:
            res = permutation_test(
                past_cols, recent_cols, wn, bins=c.bins, permutations=c.null_permutations,
                quantile=1.0 - float(c.null_alpha or 0.0), seed=seed,
            )
            per_tv = res.per_metric_tv
            per_p = res.per_metric_p
            p_value, null_q = res.aggregate_p, res.aggregate_null_quantile
        else:
            per_tv = {}
            for m in evidence:
                tv = histogram_tv(past_cols[m], recent_cols[m], c.bins)
                per_tv[m] = float(tv if tv is not None else 0.0)
        per_tv = {m: min(1.0, max(0.0, v)) for m, v in per_tv.items()}
        worst = min(1.0, float(sum(wn[m] * per_tv[m] for m in evidence)))

        e_stat = float(sum(wn[m] * eps_stat(evidence[m], c.bins, c.alpha_stat) for m in evidence))
        if c.cap_frac is not None:
            e_stat = min(e_stat, c.cap_frac * c.eps)
        eps_eff = max(0.0, c.eps + (c.eps_sens or 0.0) - e_stat)
        shift = {m: float(wasserstein1(past_cols[m], recent_cols[m]) or 0.0) for m in evidence}
        min_shift = c.min_shift or 0.0
        exceeding = sorted(m for m in evidence if per_tv[m] > eps_eff and shift[m] >= min_shift)
        need = min(c.min_metrics_exceeding or 0, len(evidence))
        if min_shift > 0:
            need = max(need, 1)
        significant = p_value is None or p_value <= float(c.null_alpha or 0.0)
        drift = worst > eps_eff and significant and len(exceeding) >= need
        threshold = max(eps_eff, null_q) if null_q is not None else eps_eff

        gain_bits, gain_ok = self._gain(recent)
        regime = self._regime(iteration, recent, evidence, seed)
        regime_exceed = bool(regime and regime.get("exceed"))

        causes = [name for name, hit in (("drift", drift), ("regime", regime_exceed),
                                         ("gain", gain_ok is False)) if hit]
        decision = self._decide(drift or regime_exceed, gain_ok is False)
        if (c.regime_anchor and not self._anchor_frozen and decision == "fail"
                and causes == ["drift"]):
            decision = "warn"
        clean = worst <= ANCHOR_CLEAN_DW or (p_value is not None and p_value >= ANCHOR_CLEAN_P)
        if (c.regime_anchor and not self._anchor_frozen and decision == "pass" and clean
                and iteration >= c.gate_warmup_iters + 2 * w):
            self._grow_anchor(recent, evidence)

        ok, warn = flags_for(decision)
        audit = Audit(
            evaluated=True,
            reason=decision,
            policy=c.policy,
            worst_DW=worst,
            eps_eff=eps_eff,
            per_metric_tv=dict(sorted(per_tv.items())),
            evidence_total=int(sum(evidence.values())),
            min_evidence=c.min_evidence,
            eps_stat=e_stat,
            threshold=threshold,
            p_value=p_value,
            null_quantile=null_q,
            per_metric_p=dict(sorted(per_p.items())),
            per_metric_shift=dict(sorted(shift.items())),
            metrics_exceeding=exceeding,
            not_evaluable=not_evaluable,
            drift_exceed=drift,
            gain_bits=gain_bits,
            gain_ok=gain_ok,
            streak=self._streak,
            regime=regime,
            causes=causes,
        )
        return GateRecord(iter=iteration, decision=decision, audit=audit, ok=ok, warn=warn)

    def _gain(self, recent: list[Snapshot]) -> tuple[float | None, bool | None]:
        c = self.controls
        gains = np.array([s.gain_bits for s in recent if _finite(s.gain_bits)], dtype=np.float64)
        if c.gain_thresh is None or gains.size < 2:
            return (float(gains.mean()) if gains.size else None), None
        mean = float(gains.mean())
        se = float(gains.std(ddof=1)) / math.sqrt(gains.size)
        return mean, not (mean + c.gain_z * se < c.gain_thresh)

    def _decide(self, bad: bool, gain_fail: bool) -> Decision:
        c = self.controls
        k = c.persistence_k or 1
        if c.policy == "either":
            return "fail" if bad or gain_fail else "pass"
        if c.policy == "conjunction":
            if bad and gain_fail:
                return "fail"
            return "warn" if bad or gain_fail else "pass"
        hit = bad or gain_fail if c.policy == "persistence" else bad
        self._streak = self._streak + 1 if hit else 0
        if self._streak >= k:
            return "fail"
        return "warn" if hit or gain_fail else "pass"

    # -- regime anchoring -----------------------------------------------------------------
    def _grow_anchor(self, recent: list[Snapshot], evidence: Mapping[str, int]) -> None:
        for m in evidence:
            col = self._column(recent, m)
            self._anchor_pool.setdefault(m, []).extend(float(v) for v in col[np.isfinite(col)])
        self._clean_windows += 1
        if self._clean_windows >= ANCHOR_MIN_WINDOWS and all(
            len(self._anchor_pool.get(m, [])) >= ANCHOR_MIN_SAMPLES for m in evidence
        ):
            self._anchor_frozen = True

    def _regime(self, iteration: int, recent: list[Snapshot], evidence: Mapping[str, int],
                seed: tuple[int, int]) -> dict[str, Any] | None:
        c = self.controls
        if not c.regime_anchor:
            return None
        if not self._anchor_frozen:
            return {"reference": False, "clean_windows": self._clean_windows, "exceed": False}
        metrics = [m for m in evidence if len(self._anchor_pool.get(m, [])) > 0]
        if not metrics:
            return {"reference": True, "exceed": False, "tv": None}
        wsum = sum(abs(self.weights[m]) for m in metrics)
        wn = {m: abs(self.weights[m]) / wsum for m in metrics}
        n_ref = min(len(self._anchor_pool[m]) for m in metrics)
        ref = {m: np.asarray(self._anchor_pool[m][:n_ref], dtype=np.float64) for m in metrics}
        rec = {m: self._column(recent, m) for m in metrics}
        threshold = ANCHOR_EPS_FACTOR * c.eps
        if c.null_enabled:
            res = permutation_test(ref, rec, wn, bins=c.bins, permutations=c.null_permutations,
                                   seed=(c.seed, int(iteration), 1))
            tv, p = res.aggregate, res.aggregate_p
            exceed = tv > threshold and p <= float(c.null_alpha or 0.0)
        else:
            tv = float(sum(wn[m] * (histogram_tv(ref[m], rec[m], c.bins) or 0.0) for m in metrics))
            p = None
            exceed = tv > threshold
        return {"reference": True, "tv": tv, "p_value": p, "threshold": threshold,
                "exceed": bool(exceed), "reference_samples": n_ref}

    # -- resume ---------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """JSON-ready engine state (probes of the last two windows, EWMA, streak, anchor)."""
        return {
            "snapshots": [attrs.asdict(s) for s in self._snapshots],
            "ewma": self._ewma,
            "streak": self._streak,
            "anchor_pool": {m: list(v) for m, v in self._anchor_pool.items()},
            "clean_windows": self._clean_windows,
            "anchor_frozen": self._anchor_frozen,
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state` returned."""
        self._snapshots = [Snapshot(**s) for s in state.get("snapshots", [])]
        self._ewma = state.get("ewma")
        self._streak = int(state.get("streak", 0))
        self._anchor_pool = {m: list(v) for m, v in dict(state.get("anchor_pool", {})).items()}
        self._clean_windows = int(state.get("clean_windows", 0))
        self._anchor_frozen = bool(state.get("anchor_frozen", False))
