"""GateEngine: decisions, skip semantics, calibrated null, policies, anchoring, resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
from gate_helpers import RANGES, synthetic_values
from hypothesis import given, settings
from hypothesis import strategies as st

from veriscope_gate.controls import GateControls, load_preset, preset_names
from veriscope_gate.engine import GateEngine
from veriscope_gate.errors import MetricError, PresetError
from veriscope_gate.records import flags_for


def _stream(engine: GateEngine, rng: np.random.Generator, *, until: int, start: int = 1,
            shift_at: int | None = None, shift: float = 0.3, spread: float = 0.02,
            loss: float | None = 2.0, loss_jump_at: int | None = None) -> list[tuple[int, str]]:
    c = engine.controls
    out: list[tuple[int, str]] = []
    for it in range(start, until + 1):
        if it % c.metric_interval == 0:
            active = shift_at is not None and it >= shift_at
            lval = None if loss is None else loss + 0.02 * rng.standard_normal()
            if lval is not None and loss_jump_at is not None and it >= loss_jump_at:
                lval += 1.5
            engine.record(it, synthetic_values(rng, shift=shift if active else 0.0, spread=spread), lval)
        if it % c.gate_window == 0:
            out.append((it, engine.check(it).decision))
    return out


def test_tuned_v0_matches_the_published_constants() -> None:
    c = load_preset("tuned_v0")
    assert (c.metric_interval, c.gate_window, c.gate_warmup_iters, c.min_evidence) == (5, 100, 1000, 20)
    assert (c.eps, c.eps_sens, c.cap_frac, c.gain_thresh) == (0.15, 0.04, 0.15, -0.003)
    assert c.weights == {"var_out_k": 0.35, "eff_dim": 0.35, "rankme": 0.20, "cos_disp": 0.10}
    engine = GateEngine(c.with_overrides({"gate_warmup_iters": 0}), RANGES)
    rng = np.random.default_rng(0)
    _stream(engine, rng, until=200)
    record = engine.check(200)
    assert record.audit.eps_eff == pytest.approx(0.1675)
    assert record.audit.evidence_total == 4 * 20


def test_every_preset_loads_and_hashes_stably() -> None:
    for name in preset_names():
        c = load_preset(name)
        assert c.controls_hash() == load_preset(name).controls_hash()
        assert c.controls_hash().startswith("sha256:")
    assert load_preset("tuned_v0").controls_hash() != load_preset("persistence_v0").controls_hash()


def test_controls_hash_payload_uses_null_for_absent() -> None:
    payload = load_preset("reference_v0").hash_payload()
    for key in ("gate_window", "gate_warmup_iters", "min_evidence", "policy", "persistence_k",
                "min_metrics_exceeding", "eps_sens", "cap_frac"):
        assert key in payload
    c = load_preset("tuned_v0", {"eps_sens": None, "cap_frac": None, "persistence_k": None})
    payload = c.hash_payload()
    assert payload["eps_sens"] is None
    assert payload["cap_frac"] is None
    assert payload["persistence_k"] is None
    assert c.controls_hash() != load_preset("tuned_v0").controls_hash()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"gate_window": 7}, "multiple of metric_interval"), ({"policy": "vote"}, "policy='vote' .expected one of either"),
     ({"null_permutations": 10}, "null_permutations must be"), ({"nope": 1}, "unknown gate control"),
     ({"eps": 0}, "eps must be")],
)
def test_invalid_controls_are_one_line_errors(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(PresetError, match=message):
        load_preset("tuned_v0", overrides)


def test_unknown_preset_lists_the_valid_ones() -> None:
    with pytest.raises(PresetError, match="valid: anchored_v0"):
        load_preset("tuned_v9")


def test_weights_must_name_declared_metrics() -> None:
    with pytest.raises(MetricError, match="no declared range"):
        GateEngine(GateControls(weights={"ghost": 1.0}), RANGES)


def test_skip_reasons() -> None:
    engine = GateEngine(load_preset("cpu_smoke"), RANGES)
    rng = np.random.default_rng(1)
    assert engine.check(40).audit.reason == "warmup"
    engine2 = GateEngine(load_preset("cpu_smoke", {"gate_warmup_iters": 0}), RANGES)
    assert engine2.check(40).audit.reason == "insufficient_evidence"  # no past window yet
    for it in range(2, 81, 2):
        engine2.record(it, {})  # probes without metrics
    rec = engine2.check(80)
    assert (rec.decision, rec.audit.reason) == ("skip", "metric_unavailable")
    assert rec.audit.evaluated is False
    assert rec.ok is None
    assert rec.audit.per_metric_tv == {}
    _ = rng


def test_one_side_empty_metric_is_not_evaluable_and_weights_renormalise() -> None:
    engine = GateEngine(load_preset("cpu_smoke", {"gate_warmup_iters": 0}), RANGES)
    rng = np.random.default_rng(2)
    for it in range(2, 81, 2):
        values = synthetic_values(rng)
        if it <= 40:
            values.pop("cos_disp")
        engine.record(it, values)
    rec = engine.check(80)
    assert rec.audit.evaluated
    assert rec.audit.not_evaluable == {"cos_disp": "one_side_empty"}
    assert set(rec.audit.per_metric_tv) == {"eff_dim", "rankme", "var_out_k"}


def test_non_finite_values_are_dropped_and_reduce_evidence() -> None:
    engine = GateEngine(load_preset("cpu_smoke", {"gate_warmup_iters": 0}), RANGES)
    rng = np.random.default_rng(3)
    for it in range(2, 81, 2):
        values = synthetic_values(rng)
        if it % 4 == 0:
            values["rankme"] = math.nan
        engine.record(it, values)
    rec = engine.check(80)
    assert rec.audit.not_evaluable.get("rankme") == "insufficient_evidence"
    assert "rankme" not in rec.audit.per_metric_tv


@pytest.mark.parametrize("spread", [0.005, 0.01, 0.02, 0.05])
def test_null_false_alarm_rate_at_most_one_percent(spread: float) -> None:
    """The reference rule fails 19-78% of such checks; ours stays <= 1% (200 checks, n = 20)."""
    engine = GateEngine(load_preset("tuned_v0", {"gate_warmup_iters": 0}), RANGES)
    rng = np.random.default_rng(11)
    decisions = [d for it, d in _stream(engine, rng, until=20_100, spread=spread, loss=None) if it >= 200]
    assert len(decisions) == 200
    assert sum(d != "pass" for d in decisions) <= 2


def test_reference_rule_has_the_documented_false_alarms() -> None:
    engine = GateEngine(load_preset("reference_v0", {"gate_warmup_iters": 0}), RANGES)
    rng = np.random.default_rng(11)
    decisions = [d for it, d in _stream(engine, rng, until=10_100, spread=0.05, loss=None) if it >= 200]
    assert sum(d == "fail" for d in decisions) / len(decisions) > 0.5


@pytest.mark.parametrize("shift", [0.1, 0.3])
def test_real_shift_detected_within_one_window(shift: float) -> None:
    engine = GateEngine(load_preset("tuned_v0", {"gate_warmup_iters": 0}), RANGES)
    rng = np.random.default_rng(5)
    decisions = dict(_stream(engine, rng, until=1500, shift_at=1001, shift=shift))
    assert all(decisions[it] == "pass" for it in range(200, 1001, 100))
    assert decisions[1100] == "fail"


def test_loss_gain_failure_is_detected() -> None:
    engine = GateEngine(load_preset("tuned_v0", {"gate_warmup_iters": 0}), RANGES)
    rng = np.random.default_rng(6)
    decisions = dict(_stream(engine, rng, until=1200, loss_jump_at=1001))
    rec = engine.check(1100)
    assert decisions[1100] == "fail"
    assert "gain" in rec.audit.causes
    assert rec.audit.gain_ok is False


def test_persistence_policy_warns_then_fails() -> None:
    engine = GateEngine(load_preset("persistence_v0", {"gate_warmup_iters": 0}), RANGES)
    rng = np.random.default_rng(8)
    decisions = dict(_stream(engine, rng, until=1400, shift_at=1001, shift=0.3))
    # the shift exceeds at 1100 (past clean / recent shifted) and at 1200 only if it keeps moving:
    assert decisions[1100] == "warn"
    engine2 = GateEngine(load_preset("persistence_v0", {"gate_warmup_iters": 0}), RANGES)
    rng2 = np.random.default_rng(8)
    out = []
    for it in range(1, 1501):
        if it % 5 == 0:
            drift = 0.0 if it <= 1000 else 0.3 * ((it - 1000) // 100 + 1)
            engine2.record(it, synthetic_values(rng2, shift=min(drift, 0.55)))
        if it % 100 == 0:
            out.append((it, engine2.check(it).decision))
    d2 = dict(out)
    assert d2[1100] == "warn"
    assert d2[1200] == "fail"


def test_conjunction_needs_drift_and_gain_to_fail() -> None:
    c = load_preset("tuned_v0", {"gate_warmup_iters": 0, "policy": "conjunction"})
    drift_only = dict(_stream(GateEngine(c, RANGES), np.random.default_rng(9), until=1100, shift_at=1001))
    assert drift_only[1100] == "warn"
    both = dict(_stream(GateEngine(c, RANGES), np.random.default_rng(9), until=1100, shift_at=1001,
                        loss_jump_at=1001))
    assert both[1100] == "fail"


def test_persistence_stability_gain_only_warns() -> None:
    c = load_preset("persistence_v0", {"gate_warmup_iters": 0, "policy": "persistence_stability"})
    out = dict(_stream(GateEngine(c, RANGES), np.random.default_rng(10), until=1300, loss_jump_at=1001))
    assert out[1100] == "warn"
    assert "fail" not in out.values()


def test_regime_anchor_freezes_and_demotes_drift_before_reference() -> None:
    c = load_preset("anchored_v0", {"gate_warmup_iters": 0})
    engine = GateEngine(c, RANGES)
    rng = np.random.default_rng(12)
    _stream(engine, rng, until=900)
    state = engine.state()
    assert state["anchor_frozen"] is True
    assert state["clean_windows"] >= 5
    rec = engine.check(900)
    assert rec.audit.regime is not None
    assert rec.audit.regime["reference"] is True
    early = GateEngine(c, RANGES)
    out = dict(_stream(early, np.random.default_rng(12), until=300, shift_at=201))
    assert out[300] == "warn"  # drift-only failure before a reference exists


def test_resume_gives_identical_decisions() -> None:
    c = load_preset("cpu_smoke", {"gate_warmup_iters": 0})
    full = GateEngine(c, RANGES)
    a = _stream(full, np.random.default_rng(13), until=400, shift_at=300)
    first = GateEngine(c, RANGES)
    rng = np.random.default_rng(13)
    part1 = _stream(first, rng, until=200, shift_at=300)
    resumed = GateEngine(c, RANGES)
    resumed.load_state(first.state())
    part2 = _stream(resumed, rng, start=201, until=400, shift_at=300)
    assert a == part1 + part2


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["either", "conjunction", "persistence", "persistence_stability"]),
       st.integers(0, 10_000), st.floats(0.0, 0.4), st.booleans())
def test_decision_invariants(policy: str, seed: int, shift: float, with_loss: bool) -> None:
    c = load_preset("cpu_smoke", {"gate_warmup_iters": 80, "policy": policy})
    engine = GateEngine(c, RANGES)
    rng = np.random.default_rng(seed)
    for it in range(1, 321):
        if it % c.metric_interval == 0:
            engine.record(it, synthetic_values(rng, shift=shift if it > 200 else 0.0),
                          2.0 + 0.02 * rng.standard_normal() if with_loss else None)
        if it % c.gate_window == 0:
            rec = engine.check(it)
            a = rec.audit
            assert (rec.decision == "skip") == (not a.evaluated)
            assert (rec.ok, rec.warn) == flags_for(rec.decision)
            if a.evaluated:
                assert a.reason == rec.decision
                assert a.worst_DW is not None
                assert 0.0 <= a.worst_DW <= 1.0
                assert a.eps_eff is not None
                assert a.eps_eff >= 0.0
                assert a.evidence_total >= a.min_evidence
                weights = [c.weights[m] for m in a.per_metric_tv]
                mean = sum(w * a.per_metric_tv[m] for m, w in zip(a.per_metric_tv, weights)) / sum(weights)
                assert a.worst_DW == pytest.approx(mean)
                if rec.decision == "pass":
                    assert not a.causes
                if policy == "either" and a.causes:
                    assert rec.decision == "fail"
            else:
                assert a.worst_DW is None
                assert a.per_metric_tv == {}
