"""The verdict is a pure function of recorded numbers, policy and guard outcomes."""

from __future__ import annotations

import numpy as np

from invarlock_core.evaluation.policy import build_policy, load_profile
from invarlock_core.evaluation.verdict import GuardOutcome, WindowScore, judge

POLICY = build_policy(tier="balanced", profile=load_profile("dev")).to_json()


def _windows(deltas: list[float], prefix: str = "w", base: float = 3.0) -> list[WindowScore]:
    return [WindowScore(f"{prefix}{i}", 63, base + 0.01 * i, base + 0.01 * i + d) for i, d in enumerate(deltas)]


def test_identical_scores_pass_with_every_flag() -> None:
    j = judge(final=_windows([0.0] * 8), preview=_windows([0.0] * 2, "p"), policy=POLICY)
    assert j.verdict == "PASS"
    assert j.reasons == ()
    assert j.primary_metric["ratio"] == 1.0
    assert j.primary_metric["ci"] == [1.0, 1.0]
    assert all(j.validation.values())


def test_ratio_above_the_tier_limit_fails_with_reasons() -> None:
    rng = np.random.default_rng(0)
    final = _windows(list(0.2 + rng.normal(0, 0.01, 16)))
    j = judge(final=final, preview=_windows([0.2, 0.2], "p"), policy=POLICY)
    assert j.verdict == "FAIL"
    assert any("exceeds the acceptance limit 1.1000" in r for r in j.reasons)
    assert any(r.startswith("primary metric: CI upper bound") for r in j.reasons)
    assert j.validation["primary_metric_ok"] is False


def test_ci_upper_bound_alone_can_fail() -> None:
    # Mean Δ ≈ 0.08 (ratio ≈ 1.083 < 1.10) but noisy: the CI reaches past the limit.
    deltas = [0.08 + (0.3 if i % 2 else -0.3) * (1 + i / 10) for i in range(10)]
    deltas[-1] = 0.8 - sum(deltas[:-1])
    j = judge(final=_windows(deltas), preview=[], policy=POLICY)
    assert j.primary_metric["ratio"] < 1.10 + 0.002
    assert j.verdict == "FAIL"
    assert len(j.reasons) == 1
    assert "CI upper bound" in j.reasons[0]


def test_explicit_acceptance_range_overrides_and_lower_bound_fails() -> None:
    loose = {**POLICY, "acceptance_range": [0.0, 2.0]}
    final = _windows([0.2] * 8)
    assert judge(final=final, preview=[], policy=loose).verdict == "PASS"
    tight = {**POLICY, "acceptance_range": [0.95, 1.10]}
    better = judge(final=_windows([-0.2] * 8), preview=[], policy=tight)
    assert better.verdict == "FAIL"
    assert "below the acceptance range" in better.reasons[0]


def test_drift_outside_the_band_fails() -> None:
    j = judge(final=_windows([0.05] * 8), preview=_windows([-0.1] * 2, "p"), policy=POLICY)
    assert j.primary_metric["drift"] > 1.1
    assert j.verdict == "FAIL"
    assert any(r.startswith("drift:") for r in j.reasons)
    assert j.validation["drift_ok"] is False


def test_nan_losses_and_weights_fail_with_reasons_not_exceptions() -> None:
    final = _windows([0.0] * 6)
    final[2] = WindowScore("w2", 63, 3.0, None)
    j = judge(
        final=final,
        preview=_windows([0.0], "p"),
        policy=POLICY,
        nonfinite_tensors=["transformer.h.0.mlp.c_fc.weight"],
    )
    assert j.verdict == "FAIL"
    assert j.reasons[0].startswith("subject has non-finite (NaN/Inf) weights in 1 tensor(s)")
    assert "non-finite (NaN/Inf) loss on 1 of 7 windows: w2" in j.reasons[1]
    assert j.primary_metric["ratio"] is None
    assert j.primary_metric["ci"] is None
    assert j.validation["weights_finite"] is False
    assert j.validation["primary_metric_finite"] is False


def test_failed_guard_fails_and_names_its_violations() -> None:
    guards = [
        GuardOutcome("invariants", True),
        GuardOutcome("spectral", False, ("mlp.c_fc: sigma ratio 20.0 > 1.5", "b", "c", "d")),
    ]
    j = judge(final=_windows([0.0] * 4), preview=[], policy=POLICY, guards=guards)
    assert j.verdict == "FAIL"
    assert j.reasons == ("guard spectral failed: mlp.c_fc: sigma ratio 20.0 > 1.5; b; c",)
    assert j.validation["invariants_ok"] is True
    assert j.validation["spectral_stable"] is False
    assert j.validation["guards_ok"] is False


def test_tail_is_a_warning_only() -> None:
    deltas = [0.0] * 18 + [0.9, 0.9]
    j = judge(final=_windows(deltas), preview=[], policy={**POLICY, "acceptance_range": [0.0, 3.0]})
    assert j.verdict == "PASS"
    assert j.warnings
    assert j.warnings[0].startswith("tail:")
