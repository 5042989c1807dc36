"""Dataset providers (``sample``, ``local_jsonl``, ``hf_text``, ``wikitext2``) and window planning."""

from __future__ import annotations

from invarlock_core.datasets.provider import DatasetOptions, DatasetProvider, DatasetTexts

__all__ = ["DatasetOptions", "DatasetProvider", "DatasetTexts"]
