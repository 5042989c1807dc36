"""Run-scoped presets: ``CALIBRATION_RUN`` × N noop evaluations, then ``GENERATE_PRESET``.

Each calibration run is one seeded noop evaluation (the baseline against itself, seeds 1..N) into
``<slug>/reports/calibration/run_<n>``; a guard firing there is a false alarm and fails the task
(exit 1, no preset). ``GENERATE_PRESET`` derives ``presets/calibrated_preset_<slug>.{toml,json}``
from those reports with :mod:`invarlock_guards.calibration`'s rule. With
``PACK_CALIBRATION_PRESET_FILE`` (one preset for every model) or ``PACK_CALIBRATION_PRESET_DIR``
(``calibrated_preset_<slug>.toml|json`` per model) the preset is reused instead and copied into the
run, so a run never reads a preset from outside its directory after this task.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from invarlock_core.errors import ConfigError
from invarlock_core.json_files import read_json
from invarlock_packs.suite.baseline import evaluation_request
from invarlock_packs.suite.config import SuiteConfig
from invarlock_packs.suite.run_layout import RunLayout

__all__ = ["MARGIN", "calibration_run", "generate_preset"]

MARGIN = 2.0
"""Thresholds widen to ``MARGIN x`` the largest noop movement (the ``calibrate`` default)."""
_REPORT = "evaluation.report.json"


def calibration_run(config: SuiteConfig, layout: RunLayout, slug: str, run: int) -> None:
    from invarlock_core.evaluation import evaluate
    from invarlock_guards.calibration import CalibrationFailed

    baseline = layout.baseline_model(slug)
    request = evaluation_request(
        config,
        layout,
        slug,
        subject=baseline,
        out=layout.calibration_dir(slug, run),
        preset=None,
        seed=run,
    )
    outcome = evaluate(request)
    if outcome.exit_code != 0:
        raise CalibrationFailed(
            f"noop calibration run {run} of {slug} failed: the guards raise false alarms on this "
            "baseline, so no preset is derived"
        )


def _reused_preset(config: SuiteConfig, slug: str) -> Path | None:
    if config.preset_file:
        return Path(config.preset_file)
    if not config.preset_dir:
        return None
    for suffix in (".toml", ".json"):
        candidate = Path(config.preset_dir) / f"calibrated_preset_{slug}{suffix}"
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"PACK_CALIBRATION_PRESET_DIR {config.preset_dir} has no calibrated_preset_{slug}.toml/.json"
    )


def _read_preset(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"preset {path} cannot be read: {exc}") from None
    return dict(data)


def _derived(config: SuiteConfig, layout: RunLayout, slug: str) -> dict[str, Any]:
    from invarlock_core.evaluation.policy import load_profile
    from invarlock_core.guarding import DEFAULT_GUARD_ORDER
    from invarlock_guards.calibration import derive_preset, null_statistics

    seeds = tuple(range(1, config.calibration_runs + 1))
    reports = [
        dict(read_json(layout.calibration_dir(slug, seed) / _REPORT, what="calibration report"))
        for seed in seeds
    ]
    null = null_statistics(reports, seeds)
    first = reports[0] if reports else {}
    return derive_preset(
        null,
        tier=config.tier,
        margin=MARGIN,
        drift_band=load_profile(config.profile).drift_band,
        guard_order=DEFAULT_GUARD_ORDER,
        provenance={
            "kind": "calibrated_preset",
            "model": slug,
            "baseline_digest": first.get("baseline", {}).get("digest"),
            "profile": config.profile,
            "noop": "subject = baseline checkpoint",
            "environment": first.get("environment", {}),
        },
    )


def generate_preset(config: SuiteConfig, layout: RunLayout, slug: str) -> None:
    from invarlock_guards.preset_files import write_preset

    reused = _reused_preset(config, slug)
    preset = _read_preset(reused) if reused is not None else _derived(config, layout, slug)
    write_preset(layout.presets, f"calibrated_preset_{slug}", preset)
