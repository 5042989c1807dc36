"""Where a suite model's checkpoint comes from: a tiny build, a local directory, or the HF cache.

Hugging Face ids are read from the hub cache (``OUT/.hf`` unless ``HF_HOME`` / ``HF_HUB_CACHE``
say otherwise). Downloads happen only with ``--net 1``; they fetch the safetensors set (never
``.bin`` weights) at the revision pinned in ``state/model_revisions.json``. Offline, a model that
is not in the cache is a one-line error before any work starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from invarlock_core.errors import InputError
from invarlock_core.json_files import read_json
from invarlock_packs.suite.models import TINY_PREFIX, SuiteModel
from invarlock_packs.suite.run_layout import RunLayout

__all__ = [
    "ALLOW_PATTERNS",
    "hf_environment",
    "hub_cache",
    "pinned_revisions",
    "resolve_checkpoint",
]

ALLOW_PATTERNS: Final = (
    "*.safetensors",
    "*.safetensors.index.json",
    "*.json",
    "*.txt",
    "*.model",
    "tokenizer*",
)
"""Files a download fetches: safetensors weights, configs and tokenizer files (no ``.bin``)."""


def hub_cache(layout: RunLayout, env: Mapping[str, str]) -> Path:
    """``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ``OUT/.hf/hub``."""
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"])
    home = Path(env["HF_HOME"]) if env.get("HF_HOME") else layout.root / ".hf"
    return home / "hub"


def hf_environment(layout: RunLayout, env: Mapping[str, str], *, net: bool) -> dict[str, str]:
    """Environment every task gets: cache placement and the offline switches."""
    extra = {} if env.get("HF_HOME") else {"HF_HOME": str(layout.root / ".hf")}
    offline = "0" if net else "1"
    extra.update(HF_HUB_OFFLINE=offline, TRANSFORMERS_OFFLINE=offline, HF_DATASETS_OFFLINE=offline)
    return extra


def pinned_revisions(layout: RunLayout) -> dict[str, str]:
    if not layout.revisions.is_file():
        return {}
    data: Any = read_json(layout.revisions, what="model revisions")
    return {str(k): str(v) for k, v in dict(data.get("revisions", {})).items()}


def _from_hub(model: SuiteModel, layout: RunLayout, *, net: bool) -> Path:
    from huggingface_hub import snapshot_download

    revision = model.revision or pinned_revisions(layout).get(model.source)
    try:
        path = snapshot_download(
            model.source,
            revision=revision,
            cache_dir=str(hub_cache(layout, os.environ)),
            allow_patterns=list(ALLOW_PATTERNS),
            local_files_only=not net,
        )
    except Exception as exc:  # the hub raises many types; all mean "not available"
        hint = "" if net else " (offline: run once with --net 1 to fetch and pin it)"
        raise InputError(
            f"model {model.source} is not available{hint}: {type(exc).__name__}"
        ) from None
    if not any(Path(path).glob("*.safetensors")):
        raise InputError(f"model {model.source} has no safetensors weights (.bin is not loaded)")
    return Path(path)


def resolve_checkpoint(model: SuiteModel, layout: RunLayout, *, net: bool) -> Path:
    """The directory holding ``model``'s checkpoint (built or fetched when needed)."""
    if model.is_tiny:
        from invarlock_core.testing import tiny_model

        return tiny_model(model.source[len(TINY_PREFIX) :])
    if model.is_local:
        path = Path(model.source).expanduser()
        if not path.is_dir():
            raise InputError(f"model path {path} is not a directory")
        return path
    return _from_hub(model, layout, net=net)
