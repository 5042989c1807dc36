"""Dataset providers (``sample``, ``local_jsonl``, ``hf_text``, ``wikitext2``) as plugins."""

from __future__ import annotations

from invarlock_core.datasets.environment import DEFAULT_DATASET, resolve_dataset_options
from invarlock_core.datasets.provider import DatasetOptions, DatasetProvider, DatasetTexts

__all__ = [
    "DEFAULT_DATASET",
    "DatasetOptions",
    "DatasetProvider",
    "DatasetTexts",
    "resolve_dataset_options",
]
