"""Tuned clean-edit parameters of a run: ``PACK_TUNED_EDIT_PARAMS_FILE`` or the shipped defaults.

The file is read and schema-checked before any work (an unreadable or invalid file is exit 2),
then copied to ``OUT/state/tuned_edit_params.json``; every ``CREATE_EDIT`` of a ``:clean:``
scenario reads that copy, so per-model overrides in the file apply and a resumed run uses the same
parameters. The shipped defaults (``invarlock_packs/data/tuned_edit_params.json``) suit the tiny
models; tune them for real models.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from invarlock_packs.suite.config import SuiteConfig

__all__ = ["load_tuned_defaults", "shipped_tuned_params"]


def shipped_tuned_params() -> Path:
    return Path(str(resources.files("invarlock_packs").joinpath("data/tuned_edit_params.json")))


def load_tuned_defaults(config: SuiteConfig) -> tuple[Path, Mapping[str, Mapping[str, Any]]]:
    """The tuned-params file to use and its per-edit defaults (validated)."""
    from invarlock_edits.tuned_params import TunedParams

    path = Path(config.tuned_params_file) if config.tuned_params_file else shipped_tuned_params()
    tuned = TunedParams.load(path)
    defaults: dict[str, Mapping[str, Any]] = dict(tuned.data.get("edits", {}))
    return path, defaults
