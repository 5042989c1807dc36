"""Checks before any work: output directory, model paths, disk space (``state/disk_pressure.json``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from invarlock_core.errors import InputError, UsageError
from invarlock_packs.suite.config import resolve_config
from invarlock_packs.suite.models import SuiteModel
from invarlock_packs.suite.preflight import (
    check_disk,
    check_models,
    check_output_dir,
    estimate_disk_gb,
)
from invarlock_packs.suite.run_layout import RunLayout
from invarlock_packs.suite.scenarios import load_catalogue, select_scenarios


def test_output_directory_rules(tmp_path: Path) -> None:
    check_output_dir(tmp_path / "new", resume=False)
    check_output_dir(tmp_path, resume=False)  # empty is fine
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="is not empty \\(not a suite run\\)"):
        check_output_dir(tmp_path, resume=False)
    with pytest.raises(UsageError, match="holds no suite run to resume"):
        check_output_dir(tmp_path, resume=True)
    with pytest.raises(UsageError, match="not a directory"):
        check_output_dir(tmp_path / "notes.txt", resume=False)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "suite_config.json").write_text("{}")
    check_output_dir(tmp_path, resume=True)
    with pytest.raises(UsageError, match="pass --resume"):
        check_output_dir(tmp_path, resume=False)


def test_missing_local_model_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    with pytest.raises(InputError, match="not a Hugging Face checkpoint directory"):
        check_models([SuiteModel("m", str(tmp_path / "m"))], RunLayout(tmp_path / "out"), net=False)


def test_offline_hub_model_without_cache_fails_before_work(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"not in the Hugging Face cache.*--net 1"):
        check_models([SuiteModel("x", "example-org/not-cached")], RunLayout(tmp_path), net=False)


def test_disk_estimate_follows_scenarios_and_storage_mode(tmp_path: Path) -> None:
    models = [SuiteModel("mistralai__mistral-7b-v0.1", "mistralai/Mistral-7B-v0.1")]
    scenarios = select_scenarios(load_catalogue(), "subset")
    copy = resolve_config({}, env={})
    symlink = resolve_config({}, env={"PACK_BASELINE_STORAGE_MODE": "snapshot_symlink"})
    assert estimate_disk_gb(copy, models, scenarios) == pytest.approx(14.0 * 21)
    assert estimate_disk_gb(symlink, models, scenarios) == pytest.approx(14.0 * 20)
    one = select_scenarios(load_catalogue(), "subset", ["prune_clean"])
    assert estimate_disk_gb(copy, models, one) == pytest.approx(28.0)


def test_disk_preflight_blocks_and_can_be_skipped(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path / "run")
    models = [SuiteModel("tiny-gpt2", "tiny:gpt2")]
    scenarios = select_scenarios(load_catalogue(), "tiny")
    huge = resolve_config({}, env={"MIN_FREE_DISK_GB": "1e9"})
    with pytest.raises(InputError, match="not enough disk space"):
        check_disk(huge, layout, models, scenarios)
    assert not layout.root.exists()  # nothing written
    skipped = resolve_config({}, env={"MIN_FREE_DISK_GB": "1e9", "PACK_SKIP_DISK_PREFLIGHT": "1"})
    check_disk(skipped, layout, models, scenarios)
    record = json.loads(layout.disk_pressure.read_text())
    assert record["skipped"] is True
    assert record["required_gb"] == 1e9
