"""The four guards on tiny real checkpoints (GPT-2, LLaMA, Mixtral) with weights damaged in memory."""

from __future__ import annotations

import gc
import math
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from guards_support import (
    Loaded,
    damaged,
    failed,
    load_for_guards,
    low_rank_,
    matrices,
    prune_,
    rtn_,
    run_guards,
)

from invarlock_core.errors import ConfigError
from invarlock_core.evaluation.finiteness import nonfinite_counts
from invarlock_core.families import classify
from invarlock_core.guarding import GuardContext
from invarlock_guards.invariants import snapshot_structure
from invarlock_guards.plugin import builtin_guards
from invarlock_guards.spectral import SpectralGuard

ARCHES = ("gpt2", "llama", "mixtral")


def first_ffn(model: Any) -> tuple[str, torch.nn.Parameter]:
    return next(iter(matrices(model).items()))


@pytest.mark.parametrize("arch", ARCHES)
def test_noop_passes_every_guard_without_findings(
    guard_model: Callable[[str], Loaded], arch: str
) -> None:
    results = run_guards(guard_model(arch))
    for name, result in results.items():
        assert result.passed, name
        assert result.severity == "pass", (name, result.violations)
        assert result.violations == ()
    assert results["spectral"].metrics["caps_applied"] == 0
    assert results["rmt"].metrics["windows"] == 8


CLEAN: dict[str, Callable[[Any], None]] = {
    "rtn8_ffn": lambda m: [rtn_(p, 8) for p in matrices(m).values()],
    "prune10_ffn": lambda m: [prune_(p, 0.10) for p in matrices(m).values()],
    "noise_all": lambda m: [
        p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(i)) * 1e-3 * p.std())
        for i, p in enumerate(m.parameters())
        if p.ndim >= 2
    ],
}


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("edit", sorted(CLEAN))
def test_clean_edits_fail_no_guard(
    guard_model: Callable[[str], Loaded], arch: str, edit: str
) -> None:
    model = guard_model(arch)
    results = run_guards(model, damaged(model.loaded.model, CLEAN[edit]))
    assert failed(results) == set(), {n: r.violations[:2] for n, r in results.items()}


@pytest.mark.parametrize("arch", ARCHES)
def test_one_ffn_matrix_scaled_20x_fails_spectral_naming_it(
    guard_model: Callable[[str], Loaded], arch: str
) -> None:
    model = guard_model(arch)
    name, _ = first_ffn(model.loaded.model)
    subject = damaged(model.loaded.model, lambda m: dict(m.named_parameters())[name].mul_(20.0))
    result = run_guards(model, subject, names=("spectral",))["spectral"]
    assert not result.passed
    fatal = [v for v in result.violations if v.severity == "fail"]
    assert fatal
    assert all(v.target.startswith(name) for v in fatal)
    sigma = next(v for v in fatal if "σ_max" in v.message)
    assert sigma.value == pytest.approx(20.0, rel=1e-3)
    change = next(v for v in fatal if "relative Frobenius change" in v.message)
    assert change.value == pytest.approx(19.0, rel=0.3)  # sketch estimate of ||19 W|| / ||W||
    assert result.metrics["worst_sigma_ratio"] == pytest.approx(20.0, rel=1e-3)


@pytest.mark.parametrize("arch", ARCHES)
def test_rank4_truncation_of_ffn_matrices_fails_spectral(
    guard_model: Callable[[str], Loaded], arch: str
) -> None:
    model = guard_model(arch)
    subject = damaged(model.loaded.model, lambda m: [low_rank_(p, 4) for p in matrices(m).values()])
    result = run_guards(model, subject, names=("spectral",))["spectral"]
    assert not result.passed
    messages = [v.message for v in result.violations if v.severity == "fail"]
    assert any("stable rank" in m for m in messages)
    # σ_max itself barely moves under truncation: the cross-module z-score designs miss this.
    ffn = result.metrics["families"]["expert_ffn" if arch == "mixtral" else "ffn"]
    assert ffn["max_sigma_ratio"] == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("value", [math.nan, math.inf])
@pytest.mark.parametrize("arch", ARCHES)
def test_non_finite_weight_fails_invariants(
    guard_model: Callable[[str], Loaded], arch: str, value: float
) -> None:
    model = guard_model(arch)
    name, _ = first_ffn(model.loaded.model)

    def poison(m: Any) -> None:
        dict(m.named_parameters())[name].view(-1)[0] = value

    results = run_guards(model, damaged(model.loaded.model, poison))
    assert {"invariants", "spectral"} <= failed(results)
    violation = results["invariants"].violations[0]
    assert violation.target == name
    assert "non-finite" in violation.message


def test_counts_taken_by_the_caller_give_the_same_snapshot(
    guard_model: Callable[[str], Loaded],
) -> None:
    """``ModelUnderTest.nonfinite`` (deduplicated names) stands for the guard's own count, tied
    aliases included."""
    model = guard_model("gpt2")

    def poison(m: Any) -> None:
        m.transformer.wte.weight.view(-1)[:3] = math.nan  # tied with lm_head.weight
        m.transformer.h[0].mlp.c_fc.weight.view(-1)[0] = math.inf

    subject = damaged(model.loaded.model, poison)
    counted = nonfinite_counts([*subject.named_parameters(), *subject.named_buffers()])
    assert "lm_head.weight" not in counted  # the caller sees one name per tensor
    snapshot = snapshot_structure(subject, nonfinite=counted)
    assert snapshot == snapshot_structure(subject)
    assert snapshot.nonfinite == {
        "transformer.wte.weight": 3,
        "transformer.h.0.mlp.c_fc.weight": 1,
        "lm_head.weight": 3,
    }


@pytest.mark.parametrize("arch", ARCHES)
def test_zeroed_matrix_fails_spectral(guard_model: Callable[[str], Loaded], arch: str) -> None:
    model = guard_model(arch)
    attn = next(
        n for n, p in model.loaded.model.named_parameters() if p.ndim == 2 and classify(n) == "attn"
    )
    result = run_guards(
        model,
        damaged(model.loaded.model, lambda m: dict(m.named_parameters())[attn].zero_()),
        names=("spectral",),
    )["spectral"]
    assert not result.passed
    assert {v.target for v in result.violations if v.severity == "fail"} == {attn}


def test_broken_weight_tie_fails_invariants(guard_model: Callable[[str], Loaded]) -> None:
    model = guard_model("gpt2")

    def untie(m: Any) -> None:
        m.lm_head.weight = torch.nn.Parameter(m.transformer.wte.weight.detach().clone())

    result = run_guards(model, damaged(model.loaded.model, untie), names=("invariants",))[
        "invariants"
    ]
    assert not result.passed
    assert any("tie" in v.message and v.severity == "fail" for v in result.violations)


def test_new_weight_tie_fails_invariants(guard_model: Callable[[str], Loaded]) -> None:
    model = guard_model("llama")

    def tie(m: Any) -> None:
        m.lm_head.weight = m.model.embed_tokens.weight

    result = run_guards(model, damaged(model.loaded.model, tie), names=("invariants",))[
        "invariants"
    ]
    assert not result.passed
    assert any("tied in the subject" in v.message for v in result.violations)


def test_resized_embeddings_fail_invariants(guard_model: Callable[[str], Loaded]) -> None:
    model = guard_model("llama")
    vocab = model.loaded.model.config.vocab_size
    result = run_guards(
        model,
        damaged(model.loaded.model, lambda m: m.resize_token_embeddings(vocab + 8)),
        names=("invariants",),
    )["invariants"]
    assert not result.passed
    assert result.metrics["shape_changes"] >= 2
    assert result.metrics["vocab"]["input_embeddings"] == vocab + 8


def test_dropped_block_fails_invariants(guard_model: Callable[[str], Loaded]) -> None:
    model = guard_model("llama")

    def drop(m: Any) -> None:
        m.model.layers = m.model.layers[:1]

    result = run_guards(model, damaged(model.loaded.model, drop), names=("invariants",))[
        "invariants"
    ]
    assert not result.passed
    assert result.metrics["missing_tensors"] > 0
    assert any(v.target == "structure" for v in result.violations)


def test_non_finite_activations_fail_rmt_and_variance(guard_model: Callable[[str], Loaded]) -> None:
    model = guard_model("gpt2")
    name, _ = first_ffn(model.loaded.model)
    subject = damaged(
        model.loaded.model, lambda m: dict(m.named_parameters())[name].fill_(math.nan)
    )
    results = run_guards(model, subject, names=("rmt", "variance"))
    assert failed(results) == {"rmt", "variance"}


def test_variance_proposes_a_scale_for_a_skewed_branch(
    guard_model: Callable[[str], Loaded],
) -> None:
    model = guard_model("llama")
    subject = damaged(
        model.loaded.model, lambda m: m.model.layers[1].mlp.down_proj.weight.mul_(0.9)
    )
    result = run_guards(model, subject, names=("variance",))["variance"]
    assert result.passed  # balanced: informational
    assert result.details["ratios"]["model.layers.1.mlp.down_proj"] == pytest.approx(0.81, rel=1e-3)
    assert result.details["scales"] == {
        "model.layers.1.mlp.down_proj": pytest.approx(1 / 0.9, rel=1e-3)
    }
    assert result.metrics["ab"]["ran"] is True
    assert result.metrics["ab"]["windows"] == 8


def test_variance_gates_in_the_conservative_tier(guard_model: Callable[[str], Loaded]) -> None:
    model = guard_model("llama")
    subject = damaged(
        model.loaded.model, lambda m: m.model.layers[0].mlp.down_proj.weight.mul_(0.5)
    )
    balanced = run_guards(model, subject, names=("variance",))["variance"]
    conservative = run_guards(model, subject, names=("variance",), tier="conservative")["variance"]
    assert balanced.passed
    assert balanced.severity == "warn"
    assert not conservative.passed
    assert conservative.thresholds["mode"] == "gating"


def test_preset_options_override_the_tier_and_are_reported(
    guard_model: Callable[[str], Loaded],
) -> None:
    model = guard_model("gpt2")
    name, _ = first_ffn(model.loaded.model)
    subject = damaged(model.loaded.model, lambda m: dict(m.named_parameters())[name].mul_(20.0))
    options = {
        "spectral": {
            "max_ratio": {"ffn": 30.0},
            "max_caps": 3,
            "degeneracy": {"change_warn": 25.0, "change_fail": 40.0},
        }
    }
    result = run_guards(model, subject, names=("spectral",), options=options)["spectral"]
    assert result.passed  # x20 is inside x30, its change of ~19 under 25, and one cap <= 3
    assert result.metrics["caps_applied"] == 1
    assert result.thresholds["max_ratio"]["ffn"] == 30.0
    assert result.thresholds["max_ratio"]["attn"] == 2.0
    assert result.thresholds["max_caps"] == 3
    assert result.thresholds["degeneracy"]["change_fail"] == 40.0
    assert result.thresholds["degeneracy"]["stable_rank_fail"] == 0.5


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"spectral": {"max_rato": {}}}, "unknown option guards.spectral.max_rato"),
        ({"spectral": {"max_caps": "five"}}, "must be a number"),
        ({"spectral": {"max_ratio": {"ffn": 0.5}}}, "outside"),
        ({"variance": {"mode": "strict"}}, "valid: informational, gating"),
        ({"rmt": {"families": ["ffn", "mlp"]}}, "unknown families"),
    ],
)
def test_bad_options_are_one_line_config_errors(
    guard_model: Callable[[str], Loaded], options: dict[str, Any], message: str
) -> None:
    model = guard_model("gpt2")
    with pytest.raises(ConfigError, match=message) as info:
        run_guards(model, names=tuple(options), options=options)
    assert "\n" not in str(info.value)


def test_mixtral_experts_and_router_are_measured(guard_model: Callable[[str], Loaded]) -> None:
    model = guard_model("mixtral")
    results = run_guards(model)
    families = results["spectral"].metrics["families"]
    assert families["expert_ffn"]["modules"] == 2 * 2 * 4  # layers x fused tensors x experts
    assert families["router"]["modules"] == 2
    assert {"expert_ffn", "router", "attn"} <= set(results["rmt"].metrics["families"])
    assert results["variance"].metrics["branches"] == 2


def test_probes_report_the_rmt_delta_and_ve_proposals(guard_model: Callable[[str], Loaded]) -> None:
    import json

    from invarlock_guards.probes import rmt_probe, ve_probe

    model = guard_model("llama")
    noop_rmt = rmt_probe(model.baseline(), model.subject())
    assert noop_rmt["delta_detected"] is False
    assert noop_rmt["rmt_stable"] is True
    subject = damaged(
        model.loaded.model, lambda m: m.model.layers[1].mlp.down_proj.weight.mul_(0.9)
    )
    probe = ve_probe(model.baseline(), model.subject(subject))
    assert probe["proposes_scales"] is True
    assert probe["scales"] == {"model.layers.1.mlp.down_proj": pytest.approx(1 / 0.9, rel=1e-3)}
    assert probe["ab"]["ran"] is True
    json.dumps(probe, allow_nan=False)
    json.dumps(noop_rmt, allow_nan=False)



@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_baseline_states_keep_nothing_of_the_baseline_model_alive(
    tiny_model_dir: Callable[[str], Path], arch: str
) -> None:
    """``evaluate`` drops the baseline before loading the subject: the guards' baseline states
    (measured, their solves possibly still waiting for a subject's) must hold none of its tensors."""
    guards = {guard.name: guard for guard in builtin_guards()}
    context = GuardContext()
    baseline = load_for_guards(tiny_model_dir(arch), arch)
    states = {name: guard.prepare(baseline.baseline(), context) for name, guard in guards.items()}
    gone = [weakref.ref(baseline.loaded.model)]
    gone += [weakref.ref(tensor) for tensor in baseline.loaded.model.parameters()]
    del baseline
    gc.collect()
    assert all(ref() is None for ref in gone)
    subject = load_for_guards(tiny_model_dir(arch), arch)
    for name, guard in guards.items():  # the states still serve: a noop passes every guard
        result = guard.validate(subject.subject(), states[name], context)
        assert result.passed, (name, result.violations)


def test_spectral_state_gives_the_same_findings_solved_jointly_or_alone(
    guard_model: Callable[[str], Loaded],
) -> None:
    """A baseline state's direct solves wait for the first subject's (one call); a state solved
    on its own, or validated again once solved, gives the same findings within the tolerance."""
    model = guard_model("mixtral")
    guard, context = SpectralGuard(), GuardContext()
    subject = damaged(model.loaded.model, lambda m: [low_rank_(p, 4) for p in matrices(m).values()])
    joint = guard.prepare(model.baseline(), context)
    alone = guard.prepare(model.baseline(), context)
    assert alone.spectra  # read before any subject: solved on its own
    first = guard.validate(model.subject(subject), joint, context)
    assert not first.passed
    for state in (joint, alone):
        again = guard.validate(model.subject(subject), state, context)
        assert {(v.target, v.severity) for v in again.violations} == {
            (v.target, v.severity) for v in first.violations
        }
        assert again.metrics["caps_applied"] == first.metrics["caps_applied"]
        for row, reference in zip(again.details["top_modules"], first.details["top_modules"]):
            assert row["module"] == reference["module"]
            assert row["sigma_ratio"] == pytest.approx(reference["sigma_ratio"], rel=2e-3)
