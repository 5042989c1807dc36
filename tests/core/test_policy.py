"""Tiers, profiles and presets combine into one recorded policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from invarlock_core.errors import ConfigError, UsageError
from invarlock_core.evaluation.policy import (
    PROFILES,
    TIERS,
    build_policy,
    load_preset,
    load_profile,
)


def test_tier_limits_match_the_reference() -> None:
    assert {name: tier.max_ratio for name, tier in TIERS.items()} == {
        "balanced": 1.10,
        "conservative": 1.05,
        "aggressive": 1.20,
    }
    dev = load_profile("dev")
    for name, tier in TIERS.items():
        policy = build_policy(tier=name, profile=dev)
        assert policy.acceptance_range == (0.0, tier.max_ratio)
        assert policy.acceptance_source == "tier"


def test_profiles_carry_the_seed_floors() -> None:
    assert PROFILES == ("dev", "ci", "release")
    ci, release, dev = load_profile("ci"), load_profile("release"), load_profile("dev")
    assert (ci.floors.preview_windows, ci.floors.final_windows, ci.floors.replicates) == (240, 240, 1200)
    assert (release.floors.preview_windows, release.floors.final_windows) == (400, 400)
    assert release.floors.replicates == 3200
    assert ci.floors.tokens == release.floors.tokens == 50_000
    assert ci.drift_band == release.drift_band == (0.95, 1.05)
    assert dev.floors.final_windows < ci.floors.final_windows
    assert ci.tolerance == 0.002
    assert ci.alpha == 0.05
    with pytest.raises(UsageError, match="valid: dev, ci, release"):
        load_profile("prod")


def test_explicit_beats_preset_beats_tier(tmp_path: Path) -> None:
    preset_file = tmp_path / "p.json"
    preset_file.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "tier": "conservative",
                "primary_metric": {"acceptance_range": [0.9, 1.3], "drift_band": [0.8, 1.2]},
                "guards": {"order": ["invariants"], "invariants": {"strict": True}},
            }
        )
    )
    preset = load_preset(preset_file)
    assert preset.guard_order == ("invariants",)
    assert preset.guard_options["invariants"] == {"strict": True}
    dev = load_profile("dev")
    from_preset = build_policy(tier=None, profile=dev, preset=preset)
    assert from_preset.tier == "conservative"
    assert from_preset.acceptance_range == (0.9, 1.3)
    assert from_preset.acceptance_source == "preset"
    assert from_preset.drift_band == (0.8, 1.2)
    explicit = build_policy(tier="aggressive", profile=dev, preset=preset, acceptance_range=(0.5, 1.01))
    assert explicit.tier == "aggressive"
    assert explicit.acceptance_range == (0.5, 1.01)
    assert explicit.acceptance_source == "explicit"


def test_toml_presets_and_bad_presets(tmp_path: Path) -> None:
    good = tmp_path / "p.toml"
    good.write_text('tier = "aggressive"\n[primary_metric]\nacceptance_range = [0.0, 1.5]\n')
    assert load_preset(good).acceptance_range == (0.0, 1.5)
    bad = tmp_path / "bad.json"
    bad.write_text('{"tier": "loose"}')
    with pytest.raises(ConfigError, match=r"preset .* is invalid"):
        load_preset(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("tier = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_preset(broken)
    with pytest.raises(ConfigError, match="does not exist"):
        load_preset(tmp_path / "none.json")


def test_replicate_floor_and_alpha_are_enforced() -> None:
    with pytest.raises(UsageError, match="floor of 1200"):
        build_policy(tier=None, profile=load_profile("ci"), replicates=100)
    with pytest.raises(UsageError, match="alpha"):
        build_policy(tier=None, profile=load_profile("dev"), alpha=0.7)
    with pytest.raises(UsageError, match="unknown tier"):
        build_policy(tier="strictest", profile=load_profile("dev"))


def test_policy_json_round_trips_the_gates() -> None:
    policy = build_policy(tier="balanced", profile=load_profile("ci"), seed=4)
    data = policy.to_json()
    assert data["acceptance_range"] == [0.0, 1.1]
    assert data["bootstrap"] == {"replicates": 1200, "alpha": 0.05, "seed": 4}
    assert data["floors"]["final_windows"] == 240
