"""``hf_text`` and ``wikitext2``: texts from Hugging Face ``datasets``, cache first.

Offline by default: without ``--net`` only datasets already in the local ``datasets`` cache load
(``HF_DATASETS_OFFLINE``/``HF_HUB_OFFLINE`` are set), and a miss fails with one line naming the
dataset and the ``--net`` opt-in. ``wikitext2`` is ``wikitext``/``wikitext-2-raw-v1`` (CC BY-SA 3.0).
"""

from __future__ import annotations

import os
from typing import Any

import attrs

from invarlock_core.datasets.provider import DatasetOptions, DatasetTexts
from invarlock_core.errors import DatasetError
from invarlock_core.optional_deps import require

__all__ = ["HfTextProvider", "load_hf_texts"]

_OFFLINE_ENV = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_hf_texts(
    provider: str, name: str, config: str | None, options: DatasetOptions, license: str
) -> DatasetTexts:
    """Load ``options.split`` of ``name``/``config`` and return its ``text_field`` strings."""
    if not options.allow_network:
        for var in _OFFLINE_ENV:
            os.environ[var] = "1"
    datasets = require("datasets", purpose=f"the {provider} dataset")
    if not options.allow_network:
        datasets.config.HF_DATASETS_OFFLINE = True
        datasets.config.HF_HUB_OFFLINE = True
    label = f"{name}/{config}" if config else name
    try:
        data: Any = datasets.load_dataset(
            name, config, split=options.split, cache_dir=options.cache_dir
        )
    except Exception as exc:
        if not options.allow_network:
            raise DatasetError(
                f"{provider}: dataset {label} ({options.split}) is not in the local cache and "
                "network access is off; pass --net to download it or use --dataset sample"
            ) from exc
        raise DatasetError(f"{provider}: could not load {label}: {_first_line(exc)}") from exc
    if options.text_field not in data.column_names:
        columns = ", ".join(data.column_names)
        raise DatasetError(
            f"{provider}: {label} has no column {options.text_field!r} (columns: {columns})"
        )
    texts: list[str] = []
    for value in data[options.text_field]:
        if options.max_samples is not None and len(texts) >= options.max_samples:
            break
        if isinstance(value, str) and value.strip():
            texts.append(value)
    if not texts:
        raise DatasetError(f"{provider}: {label} ({options.split}) holds no non-empty texts")
    fingerprint = getattr(data, "_fingerprint", None)
    return DatasetTexts(
        provider=provider,
        texts=tuple(texts),
        source=f"hf:{label}:{options.split}",
        license=license,
        revision=str(fingerprint) if fingerprint else None,
    )


@attrs.frozen
class HfTextProvider:
    """A Hugging Face dataset; ``default_name``/``default_config`` apply unless overridden."""

    name: str
    summary: str
    default_name: str | None = None
    default_config: str | None = None
    license: str = "see the dataset card"
    fixed: bool = False
    """When true (``wikitext2``), ``--dataset-name``/``--dataset-config`` cannot change the source."""

    def load(self, options: DatasetOptions) -> DatasetTexts:
        name = self.default_name if self.fixed else (options.name or self.default_name)
        config = self.default_config if self.fixed else (options.config or self.default_config)
        if not name:
            raise DatasetError(f"{self.name} needs --dataset-name (e.g. allenai/c4)")
        return load_hf_texts(self.name, name, config, options, self.license)
