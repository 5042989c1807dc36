"""Checks before any work: the output directory, the models, the tuned parameters, the disk.

Everything here fails with a one-line :class:`~invarlock_core.errors.UsageError` /
:class:`~invarlock_core.errors.InputError` (exit 2) and writes nothing but
``state/disk_pressure.json``. The disk estimate follows the filtered scenario set and the baseline
storage mode: per model, the stored baseline (none for ``snapshot_symlink``) plus one subject
checkpoint per scenario (at most one at a time per scenario with cleanup on); the run needs
``max(MIN_FREE_DISK_GB, estimate)`` free unless ``PACK_SKIP_DISK_PREFLIGHT=1``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from invarlock_core.atomic import atomic_write_json
from invarlock_core.errors import InputError, UsageError
from invarlock_packs.suite.config import SuiteConfig
from invarlock_packs.suite.model_sources import hub_cache
from invarlock_packs.suite.models import SuiteModel
from invarlock_packs.suite.run_layout import RUN_MARKER, RunLayout
from invarlock_packs.suite.scenarios import Scenario

__all__ = [
    "APPROX_WEIGHTS_GB",
    "check_disk",
    "check_models",
    "check_output_dir",
    "estimate_disk_gb",
]

GIB: Final = float(1 << 30)
APPROX_WEIGHTS_GB: Final[Mapping[str, float]] = {
    "mistralai/Mistral-7B-v0.1": 14.0,
    "Qwen/Qwen2.5-14B": 28.0,
    "Qwen/Qwen2.5-32B": 64.0,
    "01-ai/Yi-34B": 68.0,
    "mistralai/Mixtral-8x7B-v0.1": 90.0,
    "Qwen/Qwen3-8B": 16.0,
}
"""Weights-only sizes of the seeds' suite models (bf16), used before a checkpoint is on disk."""
_TINY_GB: Final = 0.01
_UNKNOWN_GB: Final = 16.0


def check_output_dir(out: Path, *, resume: bool) -> None:
    """``--out`` must be new or empty (a new run) or hold a suite run (``--resume``)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    is_run = (out / RUN_MARKER).is_file()
    if resume and not is_run:
        raise UsageError(f"--out {out} holds no suite run to resume")
    if not resume and out.is_dir() and any(out.iterdir()):
        what = "a suite run; pass --resume to continue it" if is_run else "not a suite run"
        raise UsageError(f"--out {out} is not empty ({what})")


def model_weights_gb(model: SuiteModel) -> float:
    if model.is_tiny:
        return _TINY_GB
    if model.is_local:
        files = Path(model.source).expanduser().glob("*.safetensors")
        return sum(f.stat().st_size for f in files) / GIB
    return APPROX_WEIGHTS_GB.get(model.source, _UNKNOWN_GB)


def check_models(models: Sequence[SuiteModel], layout: RunLayout, *, net: bool) -> None:
    """Local paths must be checkpoint directories; offline, hub models must be in the cache."""
    for model in models:
        if model.is_local:
            path = Path(model.source).expanduser()
            if not (path / "config.json").is_file():
                raise InputError(f"model path {path} is not a Hugging Face checkpoint directory")
        elif not model.is_tiny and not net and not _cached(model, layout):
            raise InputError(
                f"model {model.source} is not in the Hugging Face cache "
                f"({hub_cache(layout, os.environ)}); run once with --net 1 to fetch and pin it"
            )


def _cached(model: SuiteModel, layout: RunLayout) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(
        model.source,
        "config.json",
        cache_dir=str(hub_cache(layout, os.environ)),
        revision=model.revision,
    )
    return isinstance(found, str)


def estimate_disk_gb(
    config: SuiteConfig, models: Sequence[SuiteModel], scenarios: Sequence[Scenario]
) -> float:
    baseline_copies = 0 if config.baseline_storage_mode == "snapshot_symlink" else 1
    subjects = len(scenarios)
    return sum(model_weights_gb(m) * (baseline_copies + subjects) for m in models)


def check_disk(
    config: SuiteConfig,
    layout: RunLayout,
    models: Sequence[SuiteModel],
    scenarios: Sequence[Scenario],
) -> float:
    """Write ``state/disk_pressure.json``; raise when the run would not fit. Returns the estimate."""
    estimate = estimate_disk_gb(config, models, scenarios)
    probe = layout.root if layout.root.exists() else layout.root.parent
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free / GIB
    required = max(config.min_free_disk_gb, estimate)
    record = {
        "estimated_gb": round(estimate, 3),
        "free_gb": round(free, 3),
        "required_gb": round(required, 3),
        "min_free_disk_gb": config.min_free_disk_gb,
        "storage_mode": config.baseline_storage_mode,
        "scenarios": len(scenarios),
        "models": len(models),
        "skipped": config.skip_disk_preflight,
    }
    if free < required and not config.skip_disk_preflight:
        raise InputError(
            f"not enough disk space under {probe}: {free:.1f} GB free, {required:.1f} GB needed "
            "(MIN_FREE_DISK_GB, or PACK_SKIP_DISK_PREFLIGHT=1 to bypass)"
        )
    atomic_write_json(layout.disk_pressure, record)
    return estimate
