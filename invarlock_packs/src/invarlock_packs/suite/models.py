"""The models of a suite: the named suites' Hugging Face ids, the offline ``tiny`` suite, and overrides.

``subset``, ``showcase``, ``workshop3`` and ``full`` are the seeds' public, ungated models. ``tiny``
uses two tiny architectures built offline from transformers configs (``tiny:gpt2``, ``tiny:llama``;
see :func:`invarlock_core.testing.tiny_model`), so a whole suite runs on a CPU in minutes.

Model slots are replaced by ``--model`` (all slots, in order), ``MODEL_1`` .. ``MODEL_8`` (one slot
each; an empty string disables the slot) or a suite file's ``models``. Each model gets a slug, the
directory name it lives under in the run directory (``mistralai/Mistral-7B-v0.1`` ->
``mistralai__mistral-7b-v0.1``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from invarlock_core.atomic import atomic_write_json
from invarlock_core.errors import UsageError
from invarlock_core.json_files import read_json

__all__ = [
    "MAX_SLOTS",
    "SUITES",
    "TINY_PREFIX",
    "SuiteModel",
    "apply_slot_overrides",
    "read_models",
    "slug_for",
    "suite_models",
    "write_models",
]

TINY_PREFIX: Final = "tiny:"
MAX_SLOTS: Final = 8
_MISTRAL = "mistralai/Mistral-7B-v0.1"
_QWEN14 = "Qwen/Qwen2.5-14B"
_QWEN32 = "Qwen/Qwen2.5-32B"
_MIXTRAL = "mistralai/Mixtral-8x7B-v0.1"
_YI34 = "01-ai/Yi-34B"
_QWEN3 = "Qwen/Qwen3-8B"

SUITES: Final[Mapping[str, tuple[str, ...]]] = {
    "tiny": ("tiny:gpt2", "tiny:llama"),
    "subset": (_MISTRAL,),
    "showcase": (_MISTRAL, _QWEN14, _QWEN32),
    "workshop3": (_MISTRAL, _MIXTRAL, _YI34),
    "full": (_MISTRAL, _QWEN14, _QWEN32, _YI34, _MIXTRAL, _QWEN3),
}
"""Suite name -> model sources (Hugging Face ids, ``tiny:<arch>`` or local directories)."""

_SLUG_BAD = re.compile(r"[^a-z0-9._-]+")


@attrs.frozen
class SuiteModel:
    """One model slot of a run (``state/models.json``)."""

    slug: str
    source: str
    revision: str | None = None

    @property
    def is_tiny(self) -> bool:
        return self.source.startswith(TINY_PREFIX)

    @property
    def is_local(self) -> bool:
        return not self.is_tiny and (
            self.source.startswith((".", "/", "~")) or Path(self.source).expanduser().exists()
        )


def slug_for(source: str) -> str:
    """A run-directory name for ``source``: lower case, ``/`` -> ``__``, other odd characters -> ``-``."""
    if source.startswith(TINY_PREFIX):
        text = "tiny-" + source[len(TINY_PREFIX) :]
    elif source.startswith((".", "/", "~")) or Path(source).expanduser().exists():
        text = Path(source).expanduser().resolve().name
    else:
        text = source.replace("/", "__")
    slug = _SLUG_BAD.sub("-", text.lower()).strip("-.") or "model"
    return slug[:100]


def suite_models(suite: str) -> tuple[str, ...]:
    try:
        return SUITES[suite]
    except KeyError:
        raise UsageError(f"unknown suite {suite!r}; valid: {', '.join(SUITES)}") from None


def apply_slot_overrides(
    sources: Sequence[str], env: Mapping[str, str], models: Sequence[str] = ()
) -> tuple[SuiteModel, ...]:
    """Apply ``--model`` (replaces every slot) or ``MODEL_1..8`` to ``sources``; give each a unique slug."""
    slots: list[str] = list(models) if models else list(sources)
    if not models:
        for index in range(MAX_SLOTS):
            value = env.get(f"MODEL_{index + 1}")
            if value is None:
                continue
            while len(slots) <= index:
                slots.append("")
            slots[index] = value.strip()
    chosen = [source for source in slots if source]
    if not chosen:
        raise UsageError("no models left to run (every model slot is empty)")
    result: list[SuiteModel] = []
    seen: set[str] = set()
    for source in chosen:
        slug, n = slug_for(source), 2
        base = slug
        while slug in seen:
            slug, n = f"{base}-{n}", n + 1
        seen.add(slug)
        result.append(SuiteModel(slug, source))
    return tuple(result)


def write_models(path: Path, models: Sequence[SuiteModel]) -> Path:
    return atomic_write_json(path, {"models": [attrs.asdict(m) for m in models]})


def read_models(path: Path) -> tuple[SuiteModel, ...]:
    data: Any = read_json(path, what="suite models")
    return tuple(
        SuiteModel(str(m["slug"]), str(m["source"]), m.get("revision")) for m in data["models"]
    )
