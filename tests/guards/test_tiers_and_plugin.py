"""Tiers shipped as data, option merging, the plugin registration and the spectral estimator."""

from __future__ import annotations

import math
import subprocess
from collections.abc import Callable

import pytest
import torch

from invarlock_core.errors import ConfigError
from invarlock_core.guarding import DEFAULT_GUARD_ORDER, GuardChain
from invarlock_core.plugins import get_plugin_manager, get_registries
from invarlock_guards.spectral_norm import KrylovSettings, top_singular_values
from invarlock_guards.tiers import TIERS, default_tier, guard_settings, load_tier, merge_options


def test_every_tier_configures_every_guard() -> None:
    from invarlock_guards.plugin import builtin_guards

    for tier in TIERS:
        table = load_tier(tier)
        assert table["name"] == tier
        for guard in builtin_guards():
            assert isinstance(table[guard.name], dict), (tier, guard.name)


def test_tiers_are_ordered_from_conservative_to_aggressive() -> None:
    c, b, a = (load_tier(t) for t in ("conservative", "balanced", "aggressive"))
    for family in c["spectral"]["max_ratio"]:
        assert (
            c["spectral"]["max_ratio"][family]
            <= b["spectral"]["max_ratio"][family]
            <= a["spectral"]["max_ratio"][family]
        )
    for family in c["rmt"]["epsilon"]:
        assert (
            c["rmt"]["epsilon"][family]
            <= b["rmt"]["epsilon"][family]
            <= a["rmt"]["epsilon"][family]
        )
    assert c["spectral"]["max_caps"] <= b["spectral"]["max_caps"] <= a["spectral"]["max_caps"]
    for key in ("stable_rank_fail", "norm_fail"):
        assert (
            c["spectral"]["degeneracy"][key]
            >= b["spectral"]["degeneracy"][key]
            >= a["spectral"]["degeneracy"][key]
        )
    for key in ("change_fail",):
        assert (
            c["spectral"]["degeneracy"][key]
            <= b["spectral"]["degeneracy"][key]
            <= a["spectral"]["degeneracy"][key]
        )
    assert c["variance"]["mode"] == "gating"
    assert b["variance"]["mode"] == "informational"


def test_merge_replaces_leaves_and_keeps_the_rest() -> None:
    base = {"a": 1, "b": {"x": 1.0, "y": 2.0}, "c": "s"}
    merged = merge_options(base, {"b": {"y": 3}}, where="guards.g")
    assert merged == {"a": 1, "b": {"x": 1.0, "y": 3.0}, "c": "s"}
    assert base["b"] == {"x": 1.0, "y": 2.0}  # not mutated
    assert merge_options(base, {"a": 4.0}, where="g")["a"] == 4
    with pytest.raises(ConfigError, match="must be an integer"):
        merge_options(base, {"a": 4.5}, where="g")
    with pytest.raises(ConfigError, match=r"unknown option g\.b\.z; valid: x, y"):
        merge_options(base, {"b": {"z": 1}}, where="g")
    with pytest.raises(ConfigError, match="must be a table"):
        merge_options(base, {"b": 1}, where="g")


def test_unknown_tier_and_tier_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(
        ConfigError, match="unknown tier 'strict'; valid: balanced, conservative, aggressive"
    ):
        guard_settings("spectral", "strict", {})
    monkeypatch.setenv("INVARLOCK_TIER", "aggressive")
    assert default_tier() == "aggressive"
    monkeypatch.setenv("INVARLOCK_TIER", "bogus")
    with pytest.raises(ConfigError):
        default_tier()
    monkeypatch.delenv("INVARLOCK_TIER")
    assert default_tier() == "balanced"


def test_guards_are_registered_by_an_entry_point_plugin() -> None:
    registries = get_registries()
    for name in ("invariants", "spectral", "rmt", "variance"):
        assert registries.guards.registration(name).plugin == "invarlock_guards.builtin"
    chain = GuardChain(registries.guards, DEFAULT_GUARD_ORDER)
    assert chain.order == ("invariants", "spectral", "rmt", "variance")
    pm = get_plugin_manager()
    assert pm.distributions["invarlock_guards.builtin"][0] == "invarlock-guards"


def test_guard_plugin_can_be_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVARLOCK_DISABLE_PLUGINS", "invarlock_guards.builtin")
    assert "spectral" not in get_registries().guards


def test_cli_lists_guards_and_rejects_bad_calibration_input(
    invarlock: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    listed = invarlock("plugins", "list")
    assert listed.returncode == 0
    assert "invarlock_guards.builtin" in listed.stdout
    missing = invarlock("calibrate", "--baseline", "/nonexistent/model", "--runs", "2")
    assert missing.returncode == 2
    assert missing.stderr.strip().startswith("error:")
    assert len(missing.stderr.strip().splitlines()) == 1
    bad = invarlock("calibrate", "--baseline", ".", "--runs", "0")
    assert bad.returncode == 2
    assert "--runs must be at least 1" in bad.stderr


@pytest.mark.parametrize(
    ("rows", "cols", "kind"),
    [
        (300, 260, "spiked"),
        (260, 300, "gaussian"),
        (512, 200, "rank1"),
        (256, 256, "zero"),
        (64, 32, "spiked"),
    ],
)
def test_sigma_max_matches_svd_within_tolerance(rows: int, cols: int, kind: str) -> None:
    generator = torch.Generator().manual_seed(rows + cols)
    if kind == "zero":
        matrix = torch.zeros(rows, cols)
    elif kind == "rank1":
        matrix = torch.outer(
            torch.randn(rows, generator=generator), torch.randn(cols, generator=generator)
        )
    else:
        matrix = torch.randn(rows, cols, generator=generator) / math.sqrt(cols)
        if kind == "spiked":
            matrix += (
                0.3
                * torch.outer(
                    torch.randn(rows, generator=generator), torch.randn(cols, generator=generator)
                )
                / math.sqrt(cols)
            )
    (estimate,) = top_singular_values([matrix], ["m"], settings=KrylovSettings(exact_below=16))
    exact = float(torch.linalg.svdvals(matrix)[0])
    assert estimate == pytest.approx(exact, rel=1e-3, abs=1e-6)
    assert estimate <= exact * (1 + 1e-5)  # Rayleigh–Ritz never overshoots


def test_non_finite_matrices_give_nan_without_poisoning_their_stack() -> None:
    good = torch.randn(220, 200, generator=torch.Generator().manual_seed(1))
    bad = good.clone()
    bad[3, 4] = math.inf
    estimates = top_singular_values([good, bad, good.T], ["a", "b", "c"])
    assert math.isnan(estimates[1])
    assert estimates[0] == pytest.approx(float(torch.linalg.svdvals(good)[0]), rel=1e-3)
    assert estimates[2] == pytest.approx(estimates[0], rel=1e-3)
    with pytest.raises(ValueError, match="one key per matrix"):
        top_singular_values([good], [])
