"""Pinned model revisions (``state/model_revisions.json``).

With ``--net 1`` each Hugging Face model's current commit is looked up once and pinned; offline,
revisions come from ``PACK_MODEL_REVISIONS_FILE`` or stay unpinned (the cache's snapshot is used).
Tiny and local models have no revision. Every later download and load uses the pinned revision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from invarlock_core.atomic import atomic_write_json
from invarlock_core.errors import InputError
from invarlock_core.json_files import read_json
from invarlock_packs.suite.models import SuiteModel
from invarlock_packs.suite.run_layout import RunLayout

__all__ = ["REVISIONS_FILE_ENV", "write_revisions"]

REVISIONS_FILE_ENV = "PACK_MODEL_REVISIONS_FILE"


def _given(env: Mapping[str, str]) -> dict[str, str]:
    name = env.get(REVISIONS_FILE_ENV, "").strip()
    if not name:
        return {}
    data: Any = read_json(Path(name), what="model revisions file")
    revisions = data.get("revisions", data) if isinstance(data, dict) else None
    if not isinstance(revisions, dict):
        raise InputError(f"{REVISIONS_FILE_ENV} {name}: expected an object of model -> revision")
    return {str(k): str(v) for k, v in revisions.items()}


def _lookup(source: str) -> str:
    from huggingface_hub import HfApi

    try:
        sha = HfApi().model_info(source).sha
    except Exception as exc:  # network and hub errors alike: the run cannot pin this model
        raise InputError(f"cannot pin a revision for {source}: {type(exc).__name__}") from None
    if not sha:
        raise InputError(f"the hub reports no revision for {source}")
    return str(sha)


def write_revisions(
    layout: RunLayout, models: Sequence[SuiteModel], env: Mapping[str, str], *, net: bool
) -> tuple[SuiteModel, ...]:
    """Pin what can be pinned, write the file, and return the models with their revisions."""
    given = _given(env)
    pinned = []
    for model in models:
        revision = given.get(model.source)
        if revision is None and net and not (model.is_tiny or model.is_local):
            revision = _lookup(model.source)
        pinned.append(attrs.evolve(model, revision=revision))
    atomic_write_json(
        layout.revisions,
        {"revisions": {m.source: m.revision for m in pinned if m.revision}, "net": net},
    )
    return tuple(pinned)
