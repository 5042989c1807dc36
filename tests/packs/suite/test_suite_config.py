"""One typed configuration: defaults < suite defaults < TOML < environment < flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from invarlock_core.errors import ConfigError
from invarlock_packs.suite.config import read_config, resolve_config, write_config


def test_layers_apply_in_order(tmp_path: Path) -> None:
    toml = tmp_path / "suite.toml"
    toml.write_text(
        'suite = "tiny"\nclean_runs = 5\nstress_runs = 4\ncalibration_runs = 3\n'
        'models = ["./a", "./b"]\nscenario_ids = ["prune_clean"]\n'
    )
    env = {"CLEAN_EDIT_RUNS": "6", "STRESS_EDIT_RUNS": "7"}
    config = resolve_config({"stress_runs": 8, "repeats": None}, env=env, suite_file=toml)
    assert config.suite == "tiny"
    assert config.calibration_runs == 3  # TOML over the tiny suite's default of 2
    assert config.clean_runs == 6  # environment over TOML
    assert config.stress_runs == 8  # flag over environment
    assert config.seq_len == 64  # the tiny suite's default, untouched
    assert config.models == ("./a", "./b")
    assert config.scenario_ids == ("prune_clean",)


def test_seed_defaults_without_overrides() -> None:
    config = resolve_config({}, env={})
    assert (config.suite, config.calibration_runs, config.clean_runs, config.stress_runs) == (
        "subset",
        5,
        3,
        2,
    )
    assert config.baseline_storage_mode == "snapshot_copy"
    assert config.min_free_disk_gb == 200.0
    assert not config.net


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CLEAN_EDIT_RUNS": "three"}, "CLEAN_EDIT_RUNS='three' is not an integer"),
        ({"PACK_NET": "maybe"}, "PACK_NET='maybe' is not a boolean"),
        ({"PACK_BASELINE_STORAGE_MODE": "hardlink"}, "invalid suite configuration"),
        ({"CLEAN_EDIT_RUNS": "0"}, "invalid suite configuration"),
    ],
)
def test_bad_environment_values_are_config_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_config({}, env=env)


def test_unknown_toml_key_and_bad_toml(tmp_path: Path) -> None:
    bad_key = tmp_path / "a.toml"
    bad_key.write_text("clean_rusn = 3\n")
    with pytest.raises(ConfigError, match="unknown key 'clean_rusn'"):
        resolve_config({}, env={}, suite_file=bad_key)
    broken = tmp_path / "b.toml"
    broken.write_text("clean_runs = \n")
    with pytest.raises(ConfigError, match="not readable TOML"):
        resolve_config({}, env={}, suite_file=broken)


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    config = resolve_config({"suite": "tiny", "models": ("x",)}, env={"PACK_REPEATS": "2"})
    assert read_config(write_config(tmp_path / "c.json", config)) == config
