"""A model's baseline in a suite run: stored once, scored once, reused by every evaluation.

``SETUP_BASELINE`` stores the checkpoint under ``<slug>/models/baseline`` (``snapshot_copy``: a
copy; ``snapshot_symlink``: a directory of links into the source; ``save_pretrained``: loaded and
saved again), writes ``<slug>/model_profile.json`` for the memory planner, and evaluates the
baseline against itself into ``<slug>/reports/baseline``. That report stores the per-window
baseline losses; :func:`evaluation_request` points every later evaluation of the model at it, so
the baseline is scored once per model (G-18/G-19). This module is the one place that decides how
the baseline is reused.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from invarlock_core.atomic import atomic_write_json, staged_directory
from invarlock_core.json_files import read_json
from invarlock_packs.suite.config import SuiteConfig
from invarlock_packs.suite.model_sources import resolve_checkpoint
from invarlock_packs.suite.models import SuiteModel
from invarlock_packs.suite.run_layout import RunLayout

__all__ = [
    "BASELINE_SEED",
    "evaluation_request",
    "setup_baseline",
    "store_checkpoint",
    "window_settings",
]

BASELINE_SEED = 0
"""The window seed shared by the baseline report and every subject evaluation (so windows match)."""
_REPORT = "evaluation.report.json"


def window_settings(config: SuiteConfig) -> dict[str, Any]:
    """Evaluation settings of the run (0 = the profile's default), with OOM-retry reductions applied.

    A retry after an out-of-memory failure gets a halved ``INVARLOCK_EVAL_BATCH`` and
    ``INVARLOCK_SEQ_LEN``; the sequence length is only ever lowered, never raised.
    """
    batch = int(os.environ.get("INVARLOCK_EVAL_BATCH") or 0) or config.eval_batch or None
    seq_len = config.seq_len or None
    retry_seq = int(os.environ.get("INVARLOCK_SEQ_LEN") or 0)
    if retry_seq and seq_len is not None and os.environ.get("INVARLOCK_TASK_ATTEMPT", "1") != "1":
        seq_len = min(seq_len, retry_seq)
    return {
        "seq_len": seq_len,
        "preview_windows": config.preview_windows or None,
        "final_windows": config.final_windows or None,
        "batch_size": batch,
        "dataset": config.dataset or None,
        "profile": config.profile,
        "tier": config.tier,
        "allow_network": config.net,
        "trust_remote_code": config.trust_remote_code,
    }


def evaluation_request(
    config: SuiteConfig,
    layout: RunLayout,
    slug: str,
    *,
    subject: Path,
    out: Path,
    preset: Path | None,
    seed: int = BASELINE_SEED,
) -> Any:
    """The :class:`EvaluationRequest` of one subject, reusing the baseline report when windows match."""
    from invarlock_core.evaluation import EvaluationRequest

    settings = window_settings(config)
    reused = layout.baseline_report_dir(slug) / _REPORT
    same_windows = seed == BASELINE_SEED and settings["seq_len"] == (config.seq_len or None)
    return EvaluationRequest(
        baseline=layout.baseline_model(slug),
        out=out,
        subject=subject,
        preset=preset,
        seed=seed,
        baseline_report=reused if same_windows and reused.is_file() else None,
        **settings,
    )


def store_checkpoint(
    source: Path, target: Path, mode: str, *, trust_remote_code: bool = False
) -> None:
    """Store ``source`` at ``target`` (staged, then swapped in) the way ``mode`` says."""
    with staged_directory(target, overwrite=True) as stage:
        if mode == "snapshot_symlink":
            for item in sorted(source.iterdir()):
                (stage / item.name).symlink_to(item.resolve())
        elif mode == "save_pretrained":
            from invarlock_core.models import load_model

            loaded = load_model(source, device="cpu", trust_remote_code=trust_remote_code)
            loaded.model.save_pretrained(str(stage), safe_serialization=True)
            if loaded.tokenizer is not None:
                loaded.tokenizer.save_pretrained(str(stage))
        else:
            shutil.copytree(source, stage, dirs_exist_ok=True, symlinks=False)


def _write_profile(layout: RunLayout, slug: str, checkpoint: Path) -> None:
    from invarlock_core.scheduling import ModelProfile

    config: Any = read_json(checkpoint / "config.json", what="model config")
    size = sum(f.stat().st_size for f in checkpoint.glob("*.safetensors"))
    profile = ModelProfile.from_hf_config(slug, dict(config), size / float(1 << 30))
    atomic_write_json(layout.model_profile(slug), profile.to_json())


def setup_baseline(config: SuiteConfig, layout: RunLayout, model: SuiteModel) -> None:
    """Store the baseline, write its profile, and write the reusable baseline report."""
    from invarlock_core.evaluation import evaluate

    source = resolve_checkpoint(model, layout, net=config.net)
    stored = layout.baseline_model(model.slug)
    store_checkpoint(
        source, stored, config.baseline_storage_mode, trust_remote_code=config.trust_remote_code
    )
    _write_profile(layout, model.slug, stored)
    request = evaluation_request(
        config,
        layout,
        model.slug,
        subject=stored,
        out=layout.baseline_report_dir(model.slug),
        preset=None,
    )
    evaluate(request)
