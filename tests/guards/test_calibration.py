"""``invarlock calibrate``: null statistics, the derivation rule, and presets that evaluate consumes."""

from __future__ import annotations

import json
import math
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from invarlock_core.evaluation.policy import load_preset
from invarlock_guards.calibration import NullStatistics, derive_preset, null_statistics
from invarlock_guards.preset_files import to_toml, write_preset

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # tiny models: no thread-pool spin


def test_derivation_widens_tier_thresholds_by_the_margin_only_where_the_null_is_wider() -> None:
    null = NullStatistics(
        runs=3,
        seeds=(1, 2, 3),
        pm_log_ratio=0.0,
        pm_log_drift=0.08,
        spectral_log_ratio={"ffn": 0.5, "attn": 0.0},
        rmt_growth={"ffn": 0.2},
        variance_log_ratio=0.5,
    )
    preset = derive_preset(
        null,
        tier="balanced",
        margin=2.0,
        drift_band=(0.9, 1.1),
        guard_order=["invariants"],
        provenance={},
    )
    spectral = preset["guards"]["spectral"]
    assert spectral["max_ratio"]["ffn"] == pytest.approx(math.e)  # exp(2 x 0.5) > tier 2.0
    assert spectral["max_ratio"]["attn"] == 2.0  # no null movement: the tier value
    assert spectral["noise_scale"]["ffn"] == pytest.approx(1.0)
    assert preset["guards"]["rmt"]["epsilon"]["ffn"] == pytest.approx(0.4)
    assert preset["guards"]["rmt"]["epsilon"]["attn"] == pytest.approx(0.1)
    assert preset["guards"]["variance"]["max_ratio"] == pytest.approx(math.e)
    assert preset["guards"]["variance"]["min_ratio"] == pytest.approx(
        math.exp(-1.0)
    )  # below tier 0.5
    assert preset["primary_metric"]["drift_band"] == pytest.approx(
        [math.exp(-0.16), math.exp(0.16)]
    )
    assert preset["provenance"]["null"]["seeds"] == [1, 2, 3]


def test_null_statistics_take_the_largest_movement_over_runs() -> None:
    def report(sigma: float, band: float, var: float, drift: float) -> dict[str, object]:
        return {
            "primary_metric": {"ratio": 1.0, "drift": drift},
            "guards": [
                {
                    "name": "spectral",
                    "metrics": {
                        "families": {"ffn": {"max_sigma_ratio": sigma, "min_sigma_ratio": 1.0}}
                    },
                },
                {
                    "name": "rmt",
                    "metrics": {"families": {"attn": {"band_ratio": band}}},
                    "details": {"top_modules": []},
                },
                {"name": "variance", "metrics": {"min_ratio": 1 / var, "max_ratio": var}},
            ],
        }

    null = null_statistics([report(1.01, 1.002, 1.05, 1.0), report(1.03, 1.0, 1.01, 0.98)], [1, 2])
    assert null.spectral_log_ratio["ffn"] == pytest.approx(math.log(1.03))
    assert null.rmt_growth["attn"] == pytest.approx(0.002)
    assert null.variance_log_ratio == pytest.approx(math.log(1.05))
    assert null.pm_log_drift == pytest.approx(-math.log(0.98))


def test_preset_files_round_trip_and_validate(tmp_path: Path) -> None:
    preset = {
        "schema_version": 1,
        "tier": "balanced",
        "guards": {"order": ["invariants", "spectral"], "spectral": {"max_ratio": {"ffn": 2.5}}},
        "provenance": {"model": "a b", "cuda": None, "seeds": [1, 2], "nested": {"x.y": 1.5}},
    }
    toml_path, json_path = write_preset(tmp_path, "calibrated_preset_x", preset)
    assert json.loads(json_path.read_text()) == preset
    assert tomllib.loads(toml_path.read_text())["provenance"] == {
        "model": "a b",
        "seeds": [1, 2],
        "nested": {"x.y": 1.5},
    }
    for path in (toml_path, json_path):
        loaded = load_preset(path)
        assert loaded.guard_options["spectral"] == {"max_ratio": {"ffn": 2.5}}
        assert loaded.guard_order == ("invariants", "spectral")
    with pytest.raises(ValueError, match="cannot hold"):
        to_toml({"x": math.nan})


@pytest.mark.slow
def test_calibrate_writes_a_preset_that_evaluate_consumes(
    tiny_model_dir: Callable[[str], Path],
    invarlock: Callable[..., subprocess.CompletedProcess[str]],
    tmp_path: Path,
) -> None:
    baseline = tiny_model_dir("gpt2")
    out = tmp_path / "presets"
    done = invarlock(
        "calibrate",
        "--baseline",
        str(baseline),
        "--runs",
        "2",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--name",
        "tiny-gpt2",
        "--preview-windows",
        "2",
        "--final-windows",
        "4",
        env=ONE_THREAD,
    )
    assert done.returncode == 0, done.stderr
    toml_path, json_path = (
        out / "calibrated_preset_tiny-gpt2.toml",
        out / "calibrated_preset_tiny-gpt2.json",
    )
    assert sorted(p.name for p in out.iterdir()) == [json_path.name, toml_path.name]  # no leftovers
    preset = json.loads(json_path.read_text())
    assert tomllib.loads(toml_path.read_text())["guards"] == preset["guards"]
    assert preset["provenance"]["null"]["runs"] == 2
    assert preset["provenance"]["null"]["seeds"] == [1, 2]
    assert preset["guards"]["order"] == ["invariants", "spectral", "rmt", "variance", "invariants"]
    preset["guards"]["spectral"]["max_ratio"]["ffn"] = 2.75  # a visible, valid value
    json_path.write_text(json.dumps(preset))
    report_dir = tmp_path / "eval"
    evaluated = invarlock(
        "evaluate",
        "--baseline",
        str(baseline),
        "--subject",
        str(baseline),
        "--out",
        str(report_dir),
        "--device",
        "cpu",
        "--preset",
        str(json_path),
        "--preview-windows",
        "2",
        "--final-windows",
        "4",
        env=ONE_THREAD,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads((report_dir / "evaluation.report.json").read_text())
    spectral = next(g for g in report["guards"] if g["name"] == "spectral")
    assert spectral["thresholds"]["max_ratio"]["ffn"] == 2.75
