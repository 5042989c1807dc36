"""Built-in dataset providers, registered as a plugin by the plugin-manager factory."""

from __future__ import annotations

from collections.abc import Callable

from invarlock_core.datasets.provider import DatasetProvider
from invarlock_core.hookspecs import hookimpl


@hookimpl
def invarlock_register_datasets(register: Callable[[DatasetProvider], None]) -> None:
    """Register ``sample``, ``local_jsonl``, ``hf_text`` and ``wikitext2``."""
