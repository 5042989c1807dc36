"""Built-in dataset providers, registered as a plugin by the plugin-manager factory."""

from __future__ import annotations

from collections.abc import Callable

from invarlock_core.datasets.hf_text import HfTextProvider
from invarlock_core.datasets.local_jsonl import LocalJsonlProvider
from invarlock_core.datasets.provider import DatasetProvider
from invarlock_core.datasets.sample import SampleProvider
from invarlock_core.hookspecs import hookimpl

__all__ = ["builtin_providers", "invarlock_register_datasets"]


def builtin_providers() -> tuple[DatasetProvider, ...]:
    """``sample``, ``local_jsonl``, ``hf_text`` and ``wikitext2``."""
    return (
        SampleProvider(),
        LocalJsonlProvider(),
        HfTextProvider(
            name="hf_text",
            summary="a Hugging Face dataset (--dataset-name, --dataset-config, --split; cache or --net)",
            default_name="allenai/c4",
            default_config="en",
        ),
        HfTextProvider(
            name="wikitext2",
            summary="WikiText-2 raw (wikitext/wikitext-2-raw-v1, CC BY-SA 3.0; cache or --net)",
            default_name="wikitext",
            default_config="wikitext-2-raw-v1",
            license="CC-BY-SA-3.0",
            fixed=True,
        ),
    )


@hookimpl
def invarlock_register_datasets(register: Callable[[DatasetProvider], None]) -> None:
    """Register ``sample``, ``local_jsonl``, ``hf_text`` and ``wikitext2``."""
    for provider in builtin_providers():
        register(provider)
