"""Detection coverage: every parameter vs the baseline's, activation collapse, and the clean/harmful
matrix of ``benchmarks/bench_detection.py`` (a fast subset here, all of it under ``slow``)."""

from __future__ import annotations

import copy
import importlib.util
import math
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest
import torch
from guards_support import Loaded, damaged, run_guards
from hypothesis import given, settings
from hypothesis import strategies as st

from invarlock_core.errors import ConfigError
from invarlock_core.guarding import GuardContext
from invarlock_guards.activation_grams import GramQueue
from invarlock_guards.activation_probe import ModuleRatio
from invarlock_guards.calibration import NullStatistics, derive_preset, null_statistics
from invarlock_guards.rmt import RMTSettings, compare_rmt
from invarlock_guards.spectral import SpectralGuard
from invarlock_guards.tensor_drift import TensorDriftSettings, compare_samples, sample_tensors
from invarlock_guards.tiers import TIERS, guard_settings, load_tier

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_detection.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_detection", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _drift_settings(tier: str = "balanced") -> TensorDriftSettings:
    return TensorDriftSettings.from_table(
        load_tier(tier)["spectral"]["tensors"], where="guards.spectral.tensors"
    )


def _targets(result: Any, statistic: str) -> set[str]:
    return {v.target for v in result.violations if v.message.startswith(f"{statistic}:")}


# --- every parameter against the baseline ---------------------------------------------------


def test_every_parameter_is_compared_and_a_noop_moves_nothing(
    guard_model: Callable[[str], Loaded],
) -> None:
    model = guard_model("gpt2")
    result = run_guards(model, names=("spectral",))["spectral"]
    tensors = result.metrics["tensors"]
    unique = dict(model.loaded.model.named_parameters())
    assert tensors["compared"] == len(unique)
    assert result.severity == "pass"
    norm = tensors["families"]["norm"]
    assert norm["max_vector_change"] == 0.0
    assert norm["max_zeroed_fraction"] == 0.0
    assert norm["min_sign_agreement"] == 1.0
    assert result.thresholds["tensors"]["zeroed_fail"]["norm"] == 0.01


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_zeroed_norm_gains_fail_naming_the_tensor_and_statistic(
    guard_model: Callable[[str], Loaded], arch: str
) -> None:
    model = guard_model(arch)
    names = [
        n
        for n, p in model.loaded.model.named_parameters()
        if p.ndim == 1 and "norm" in n.replace("ln_", "norm")
    ]
    target = names[0]
    subject = damaged(model.loaded.model, lambda m: dict(m.named_parameters())[target].zero_())
    result = run_guards(model, subject, names=("spectral",))["spectral"]
    assert result.passed is False
    assert _targets(result, "zeroed_fraction") == {target}
    assert _targets(result, "relative_change") == {target}


def test_a_sign_flipped_bias_fails_on_sign_agreement(guard_model: Callable[[str], Loaded]) -> None:
    model = guard_model("gpt2")
    target = "transformer.h.0.mlp.c_fc.bias"
    subject = damaged(model.loaded.model, lambda m: dict(m.named_parameters())[target].neg_())
    result = run_guards(model, subject, names=("spectral",))["spectral"]
    assert _targets(result, "sign_agreement") == {target}
    (violation,) = [v for v in result.violations if v.message.startswith("sign_agreement:")]
    assert violation.value == 0.0
    assert violation.threshold == 0.9


def test_clean_dtype_round_trips_of_every_tensor_pass(guard_model: Callable[[str], Loaded]) -> None:
    model = guard_model("llama")
    for dtype in (torch.bfloat16, torch.float16):

        def round_trip(m: Any, dtype: Any = dtype) -> None:
            for p in m.parameters():
                p.copy_(p.to(dtype).float())

        result = run_guards(model, damaged(model.loaded.model, round_trip), names=("spectral",))
        summary = result["spectral"].metrics["tensors"]["families"]["norm"]
        assert result["spectral"].severity == "pass", dtype
        assert 0.0 < summary["max_vector_change"] < 0.003


class _Pair(torch.nn.Module):
    """A module with one vector and one matrix larger than the sample."""

    def __init__(self, vector: torch.Tensor, matrix: torch.Tensor) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(vector)
        self.weight = torch.nn.Parameter(matrix)


def test_large_tensors_are_read_at_the_same_seeded_positions_on_both_sides() -> None:
    generator = torch.Generator().manual_seed(0)
    base = _Pair(torch.randn(8, generator=generator), torch.randn(100, 100, generator=generator))
    flipped = copy.deepcopy(base)
    with torch.no_grad():
        flipped.weight.neg_()
    settings_ = _drift_settings()
    b = sample_tensors(base, seed=3, size=settings_.sample_size)
    s = sample_tensors(flipped, seed=3, size=settings_.sample_size)
    assert dict(zip(b.names, b.whole)) == {"bias": True, "weight": False}
    assert b.lengths == (8, settings_.sample_size)
    found, metrics = compare_samples(b, s, settings_)
    assert {(v.target, v.message.split(":")[0]) for v in found} == {("weight", "sign_agreement")}
    assert metrics["families"]["other"]["min_sign_agreement"] == 0.0
    again = sample_tensors(base, seed=3, size=settings_.sample_size)
    assert torch.equal(again.values, b.values)


class _Reversed(torch.nn.Module):
    """:class:`_Pair`'s parameters registered in the other order."""

    def __init__(self, pair: _Pair) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(pair.weight.detach().clone())
        self.bias = torch.nn.Parameter(pair.bias.detach().clone())


def test_tensors_are_matched_by_name_not_by_position() -> None:
    generator = torch.Generator().manual_seed(1)
    base = _Pair(torch.randn(8, generator=generator), torch.randn(4, 4, generator=generator))
    subject = _Reversed(base)
    assert [n for n, _p in subject.named_parameters()] == ["weight", "bias"]
    found, metrics = compare_samples(
        sample_tensors(base, seed=0, size=1024),
        sample_tensors(subject, seed=0, size=1024),
        _drift_settings(),
    )
    assert found == []
    assert metrics["compared"] == 2
    assert metrics["families"]["other"]["max_vector_change"] == 0.0


def test_byte_identical_parameters_are_not_read(guard_model: Callable[[str], Loaded]) -> None:
    model = guard_model("gpt2")
    names = frozenset(n for n, _p in model.loaded.model.named_parameters())
    guard, context = SpectralGuard(), GuardContext()
    state = guard.prepare(model.baseline(), context)
    result = guard.validate(attrs.evolve(model.subject(), unchanged=names), state, context)
    assert result.metrics["tensors"]["compared"] == 0
    assert result.metrics["tensors"]["reused_unchanged"] == len(names)
    assert result.metrics["tensors"]["not_compared"] == 0


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(
        st.floats(-4, 4, allow_nan=False).filter(lambda x: abs(x) > 1e-3), min_size=1, max_size=64
    ),
    data=st.data(),
)
def test_zeroed_fraction_and_sign_agreement_count_exactly(values: list[float], data: Any) -> None:
    n = len(values)
    zero = data.draw(st.sets(st.integers(0, n - 1)))
    flip = data.draw(st.sets(st.integers(0, n - 1))) - zero
    base = _Pair(torch.tensor(values), torch.zeros(1, 1))
    subject = copy.deepcopy(base)
    with torch.no_grad():
        for i in zero:
            subject.bias[i] = 0.0
        for i in flip:
            subject.bias[i] = -subject.bias[i]
    settings_ = _drift_settings()
    _found, metrics = compare_samples(
        sample_tensors(base, seed=0, size=4096),
        sample_tensors(subject, seed=0, size=4096),
        settings_,
    )
    other = metrics["families"]["other"]
    assert other["max_zeroed_fraction"] == pytest.approx(len(zero) / n)
    shared = n - len(zero)
    assert other["min_sign_agreement"] == pytest.approx(
        (shared - len(flip)) / shared if shared else 1.0
    )


def test_bad_tensor_thresholds_are_one_line_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"guards\.spectral\.tensors\.zeroed_fail\.norm"):
        TensorDriftSettings.from_table(
            guard_settings("spectral", "balanced", {"tensors": {"zeroed_fail": {"norm": 2.0}}})[
                "tensors"
            ],
            where="guards.spectral.tensors",
        )


def test_tiers_order_the_new_thresholds_from_strict_to_loose() -> None:
    c, b, a = (load_tier(t) for t in ("conservative", "balanced", "aggressive"))
    assert set(TIERS) == {"conservative", "balanced", "aggressive"}
    for family, value in b["spectral"]["tensors"]["vector_change_fail"].items():
        assert c["spectral"]["tensors"]["vector_change_fail"][family] <= value
        assert value <= a["spectral"]["tensors"]["vector_change_fail"][family]
        assert (
            c["spectral"]["tensors"]["sign_agreement_min"][family]
            >= b["spectral"]["tensors"]["sign_agreement_min"][family]
            >= a["spectral"]["tensors"]["sign_agreement_min"][family]
        )
    for key, value in b["rmt"]["collapse"].items():
        assert c["rmt"]["collapse"][key] >= value >= a["rmt"]["collapse"][key]


# --- activation collapse --------------------------------------------------------------------


def test_queue_records_the_spread_of_zero_constant_and_live_outputs() -> None:
    generator = torch.Generator().manual_seed(0)
    live = torch.randn(256, 16, generator=generator)
    constant = live.clone()
    constant[:, :4] = 3.0
    queue = GramQueue(seed=0)
    queue.add_output("live", live)
    queue.add_output("half", constant)
    queue.add_output("zero", torch.zeros(256, 16))
    queue.close_batch()
    queue.solve()
    (full,) = queue.spreads["live"]
    (half,) = queue.spreads["half"]
    (dead,) = queue.spreads["zero"]
    assert full.live == 1.0
    assert half.live == 0.75
    assert half.variance == pytest.approx(full.variance * 0.75, rel=0.2)
    assert (dead.variance, dead.live, dead.rank) == (0.0, 0.0, 0.0)
    # i.i.d. columns: the standardised output has a stable rank of a good part of its width
    assert 4.0 < full.rank <= 16.0


def test_a_collapsed_block_input_fails_rmt_on_collapse(
    guard_model: Callable[[str], Loaded],
) -> None:
    model = guard_model("llama")
    target = "model.layers.0.input_layernorm.weight"
    subject = damaged(model.loaded.model, lambda m: dict(m.named_parameters())[target].zero_())
    result = run_guards(model, subject, names=("rmt",))["rmt"]
    assert result.passed is False
    collapsed = {v.target for v in result.violations if v.message.startswith("variance:")}
    assert "model.layers.0.self_attn.q_proj" in collapsed
    attn = result.metrics["families"]["attn"]
    assert attn["min_variance_ratio"] == pytest.approx(0.0, abs=1e-6)
    noop = run_guards(model, names=("rmt",))["rmt"]
    assert noop.metrics["families"]["attn"]["min_variance_ratio"] == pytest.approx(1.0)
    assert noop.thresholds["collapse"]["variance_fail"] == 0.25


def test_a_halved_branch_scale_is_within_the_balanced_collapse_band(
    guard_model: Callable[[str], Loaded],
) -> None:
    model = guard_model("gpt2")
    target = "transformer.h.1.mlp.c_proj.weight"
    half = damaged(model.loaded.model, lambda m: dict(m.named_parameters())[target].mul_(0.6))
    tenth = damaged(model.loaded.model, lambda m: dict(m.named_parameters())[target].mul_(0.1))
    mild = run_guards(model, half, names=("rmt",))["rmt"]
    strong = run_guards(model, tenth, names=("rmt",))["rmt"]
    module = "transformer.h.1.mlp.c_proj"
    assert module not in {v.target for v in mild.violations}  # 0.36 of the variance
    assert {v.target for v in strong.violations if v.message.startswith("variance:")} == {module}


@settings(max_examples=60, deadline=None)
@given(
    base=st.floats(1e-6, 1e3),
    factor=st.floats(0.0, 2.0),
    field=st.sampled_from(["variance", "live", "rank", "ratio"]),
)
def test_a_collapse_fails_exactly_below_its_threshold(
    base: float, factor: float, field: str
) -> None:
    rmt = RMTSettings.from_table(guard_settings("rmt", "balanced", {}))
    stats = {"ratio": 2.0, "variance": 1.0, "live": 1.0, "rank": 4.0}
    baseline = {"m.mlp.fc": ModuleRatio("ffn", tokens=64, features=32, **{**stats, field: base})}
    subject = {
        "m.mlp.fc": ModuleRatio("ffn", tokens=64, features=32, **{**stats, field: base * factor})
    }
    found, metrics, _details = compare_rmt(baseline, subject, rmt)
    shrink = (base * factor) / base
    limit = getattr(rmt.collapse, f"{field}_fail")
    collapsed = [v for v in found if v.message.startswith(f"{field}:")]
    assert bool(collapsed) == (shrink < limit)
    assert metrics["families"]["ffn"][f"min_{field}_ratio"] == pytest.approx(shrink)


# --- calibration ----------------------------------------------------------------------------


def test_calibration_derives_tensor_and_collapse_thresholds_from_noop_movement() -> None:
    report = {
        "guards": [
            {
                "name": "spectral",
                "metrics": {
                    "tensors": {
                        "families": {
                            "norm": {
                                "max_vector_change": 0.02,
                                "max_zeroed_fraction": 0.0,
                                "min_sign_agreement": 0.999,
                            }
                        }
                    }
                },
            },
            {"name": "rmt", "metrics": {"families": {"ffn": {"min_variance_ratio": 0.5}}}},
        ]
    }
    null = null_statistics([report], [1])
    assert null.tensor_change == {"norm": 0.02}
    assert null.tensor_sign_flip["norm"] == pytest.approx(0.001)
    assert null.rmt_collapse["variance"] == pytest.approx(math.log(2.0))
    preset = derive_preset(
        null, tier="balanced", margin=2.0, drift_band=(0.9, 1.1), guard_order=["rmt"], provenance={}
    )
    tensors = preset["guards"]["spectral"]["tensors"]
    assert tensors["vector_change_fail"]["norm"] == pytest.approx(0.04)  # 2 x 0.02 > tier 0.03
    assert tensors["vector_change_fail"]["ffn"] == 0.03  # no movement: the tier value
    assert tensors["sign_agreement_min"]["norm"] == pytest.approx(0.99)  # tier is already lower
    collapse = preset["guards"]["rmt"]["collapse"]
    assert collapse["variance_fail"] == pytest.approx(0.25)  # exp(-2 ln 2) = 0.25 = tier
    assert collapse["live_fail"] == 0.75
    # the derived preset is a valid set of options for both guards
    guard_settings("spectral", "balanced", {"tensors": tensors})
    guard_settings("rmt", "balanced", {"collapse": collapse})
    empty = NullStatistics(
        runs=1,
        seeds=(1,),
        pm_log_ratio=0,
        pm_log_drift=0,
        spectral_log_ratio={},
        rmt_growth={},
        variance_log_ratio=0,
    )
    assert empty.tensor_change == {}


# --- the detection matrix -------------------------------------------------------------------

FAST = (
    "bf16_round_trip",
    "resharded_copy",
    "zeroed_norm_gains",
    "sign_flipped_bias",
    "ffn_rows_permuted",
)


def _matrix(
    targets: tuple[str, ...], names: tuple[str, ...] | None, root: Path, minilm: Path | None = None
) -> list[Any]:
    bench = _bench()
    subjects = [*bench.clean_subjects(), *bench.harmful_subjects()]
    chosen = [s for s in subjects if names is None or s.name in names]
    return list(bench.run_matrix(targets, chosen, root, minilm_dir=minilm))


def test_detection_matrix_fast_subset_on_gpt2(tmp_path: Path) -> None:
    outcomes = _matrix(("gpt2",), FAST, tmp_path)
    decided = {o.subject: (o.failed, o.deciders) for o in outcomes}
    assert decided["bf16_round_trip"] == (False, ())
    assert decided["resharded_copy"] == (False, ())
    assert decided["sign_flipped_bias"] == (True, ("spectral",))
    assert decided["zeroed_norm_gains"][0] is True
    assert {"spectral", "rmt"} <= set(decided["zeroed_norm_gains"][1])
    assert decided["ffn_rows_permuted"][0] is True
    assert _bench().summary(outcomes) == {"gpt2": {"harmful": (3, 3), "clean": (2, 2)}}


NOT_APPLICABLE = {
    "gpt2": {"zeroed_router"},
    "llama": {"zeroed_bias", "sign_flipped_bias", "zeroed_router"},
    "qwen2": {"zeroed_router"},
    "mistral": {"zeroed_bias", "sign_flipped_bias", "zeroed_router"},
    "mixtral": {"zeroed_bias", "sign_flipped_bias"},
    "minilm": {"weight_tying_break", "zeroed_router"},  # a headless encoder has no tie to flip
}


def _check_matrix(outcomes: list[Any], target: str) -> None:
    bench = _bench()
    wrong = [(o.subject, o.failed, o.deciders) for o in outcomes if not o.correct]
    assert wrong == []
    assert {o.subject for o in outcomes if o.failed is None} == NOT_APPLICABLE[target]
    harmful = len(bench.harmful_subjects()) - len(NOT_APPLICABLE[target])
    assert bench.summary(outcomes)[target] == {
        "harmful": (harmful, harmful),
        "clean": (len(bench.clean_subjects()),) * 2,
    }


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["gpt2", "llama", "qwen2", "mistral", "mixtral"])
def test_detection_matrix_every_architecture(tmp_path: Path, arch: str) -> None:
    _check_matrix(_matrix((arch,), None, tmp_path), arch)


@pytest.mark.slow
def test_detection_matrix_on_the_real_minilm(tmp_path: Path, minilm_dir: Path) -> None:
    _check_matrix(_matrix(("minilm",), None, tmp_path, minilm_dir), "minilm")
