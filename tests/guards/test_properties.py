"""Hypothesis properties: noops are never flagged, more damage is never less flagged, order is irrelevant."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import torch
from guards_support import Loaded, damaged, matrices, run_guards
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invarlock_core.guarding import Violation
from invarlock_guards.activation_probe import ModuleRatio
from invarlock_guards.multiple_testing import benjamini_hochberg
from invarlock_guards.rmt import RMTSettings, compare_rmt
from invarlock_guards.spectral import MatrixSpectrum, SpectralSettings, compare_spectra
from invarlock_guards.spectral_norm import top_singular_values
from invarlock_guards.tiers import TIERS, guard_settings

_RANK = {"pass": 0, "warn": 1, "fail": 2}
FAMILIES = ("ffn", "attn", "embed", "expert_ffn")


def spectra_strategy() -> st.SearchStrategy[dict[str, MatrixSpectrum]]:
    entry = st.builds(
        lambda fam, sigma, sr, rows, cols: MatrixSpectrum(
            family=fam,
            shape=(rows, cols),
            sigma=sigma,
            frobenius=sigma * math.sqrt(sr),
            zero_rows=0,
            zero_cols=0,
            finite=True,
        ),
        st.sampled_from(FAMILIES),
        st.floats(0.1, 100.0),
        st.floats(1.0, 30.0),
        st.integers(2, 64),
        st.integers(2, 64),
    )
    return st.dictionaries(
        st.from_regex(r"m[0-9]{1,3}", fullmatch=True), entry, min_size=1, max_size=24
    )


def scaled(spectrum: MatrixSpectrum, factor: float) -> MatrixSpectrum:
    return MatrixSpectrum(
        spectrum.family,
        spectrum.shape,
        spectrum.sigma * factor,
        spectrum.frobenius * factor,
        0,
        0,
        True,
    )


def flag_level(violations: list[Violation], target: str) -> int:
    return max((_RANK[v.severity] for v in violations if v.target == target), default=0)


@settings(max_examples=60, deadline=None)
@given(spectra=spectra_strategy(), tier=st.sampled_from(TIERS))
def test_spectral_noop_is_never_flagged(spectra: dict[str, MatrixSpectrum], tier: str) -> None:
    config = SpectralSettings.from_table(guard_settings("spectral", tier, {}))
    violations, metrics, _ = compare_spectra(spectra, dict(spectra), config)
    assert violations == []
    assert metrics["caps_applied"] == 0


@settings(max_examples=80, deadline=None)
@given(
    spectra=spectra_strategy(),
    data=st.data(),
    small=st.floats(1.0, 50.0),
    extra=st.floats(1.0, 50.0),
    shrink=st.booleans(),
)
def test_scaling_a_module_further_never_makes_it_less_flagged(
    spectra: dict[str, MatrixSpectrum],
    data: st.DataObject,
    small: float,
    extra: float,
    shrink: bool,
) -> None:
    config = SpectralSettings.from_table(guard_settings("spectral", "balanced", {}))
    target = data.draw(st.sampled_from(sorted(spectra)))
    a, b = (small, small * extra) if not shrink else (1 / small, 1 / (small * extra))
    levels = []
    for factor in (a, b):
        subject = {**spectra, target: scaled(spectra[target], factor)}
        violations, metrics, _ = compare_spectra(spectra, subject, config)
        levels.append((flag_level(violations, target), metrics["caps_applied"]))
    assert levels[1][0] >= levels[0][0]
    assert levels[1][1] >= levels[0][1]


@settings(max_examples=60, deadline=None)
@given(
    spectra=spectra_strategy(),
    factors=st.lists(st.floats(0.2, 5.0), min_size=24, max_size=24),
    seed=st.integers(0, 2**16),
)
def test_module_order_does_not_change_spectral_results(
    spectra: dict[str, MatrixSpectrum], factors: list[float], seed: int
) -> None:
    config = SpectralSettings.from_table(guard_settings("spectral", "balanced", {}))
    subject = {name: scaled(s, f) for (name, s), f in zip(spectra.items(), factors)}
    names = list(spectra)
    random.Random(seed).shuffle(names)
    shuffled_base = {n: spectra[n] for n in names}
    shuffled_subject = {n: subject[n] for n in reversed(names)}
    assert compare_spectra(spectra, subject, config) == compare_spectra(
        shuffled_base, shuffled_subject, config
    )


@settings(max_examples=60, deadline=None)
@given(
    ratios=st.dictionaries(
        st.from_regex(r"layer[0-9]{1,2}\.(mlp|attn)", fullmatch=True),
        st.tuples(st.floats(0.5, 20.0), st.floats(0.5, 20.0)),
        min_size=1,
        max_size=16,
    ),
    seed=st.integers(0, 2**16),
)
def test_module_order_does_not_change_rmt_results(
    ratios: dict[str, tuple[float, float]], seed: int
) -> None:
    config = RMTSettings.from_table(guard_settings("rmt", "balanced", {}))
    family = {"mlp": "ffn", "attn": "attn"}
    base = {n: ModuleRatio(family[n.split(".")[1]], b, 64, 32) for n, (b, _s) in ratios.items()}
    subj = {n: ModuleRatio(family[n.split(".")[1]], s, 64, 32) for n, (_b, s) in ratios.items()}
    names = list(ratios)
    random.Random(seed).shuffle(names)
    assert compare_rmt(base, subj, config) == compare_rmt(
        {n: base[n] for n in names}, {n: subj[n] for n in reversed(names)}, config
    )
    assert compare_rmt(base, dict(base), config)[0] == []


@settings(max_examples=60, deadline=None)
@given(
    pvalues=st.dictionaries(st.text(min_size=1, max_size=4), st.floats(0.0, 1.0), max_size=30),
    alpha=st.floats(0.001, 0.3),
)
def test_benjamini_hochberg_is_order_free_and_monotone(
    pvalues: dict[str, float], alpha: float
) -> None:
    rejected = benjamini_hochberg(pvalues, alpha)
    assert rejected == benjamini_hochberg(dict(reversed(list(pvalues.items()))), alpha)
    assert set(rejected) <= set(benjamini_hochberg(pvalues, min(0.5, alpha * 2)))
    if rejected:  # every rejected p-value is at most every accepted one
        assert max(pvalues[k] for k in rejected) <= min(
            (p for k, p in pvalues.items() if k not in rejected), default=1.0
        )


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**20), order=st.permutations(range(4)))
def test_sigma_estimates_do_not_depend_on_stack_order(seed: int, order: list[int]) -> None:
    generator = torch.Generator().manual_seed(seed)
    mats = [
        torch.randn(256, 224, generator=generator) * 0.05
        + torch.outer(torch.randn(256, generator=generator), torch.randn(224, generator=generator))
        for _ in range(4)
    ]
    keys = [f"w{i}" for i in range(4)]
    forward = top_singular_values(mats, keys, seed=seed)
    permuted = top_singular_values([mats[i] for i in order], [keys[i] for i in order], seed=seed)
    assert [forward[i] for i in order] == permuted


@settings(
    max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(1, 10_000), arch=st.sampled_from(["gpt2", "llama"]))
def test_no_guard_flags_a_noop_whatever_the_seed(
    guard_model: Callable[[str], Loaded], seed: int, arch: str
) -> None:
    model = guard_model(arch)
    results = run_guards(model, damaged(model.loaded.model, lambda m: None), seed=seed)
    assert all(r.severity == "pass" for r in results.values()), {
        n: r.violations for n, r in results.items()
    }


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(first=st.floats(1.0, 4.0), more=st.floats(1.0, 8.0))
def test_spectral_guard_is_monotone_in_the_scale_of_a_real_module(
    guard_model: Callable[[str], Loaded], first: float, more: float
) -> None:
    model = guard_model("gpt2")
    name = next(iter(matrices(model.loaded.model)))
    levels = []
    for factor in (first, first * more):
        subject = damaged(
            model.loaded.model, lambda m, f=factor: dict(m.named_parameters())[name].mul_(f)
        )
        result = run_guards(model, subject, names=("spectral",))["spectral"]
        levels.append(_RANK[result.severity])
    assert levels[1] >= levels[0]
