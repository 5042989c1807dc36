"""The dataset-provider plugin contract."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import attrs

__all__ = ["DatasetOptions", "DatasetProvider", "DatasetTexts"]


@attrs.frozen
class DatasetOptions:
    """What the user asked for; providers ignore what does not apply to them."""

    data_path: str | None = None
    text_field: str = "text"
    max_samples: int | None = None
    split: str = "validation"
    name: str | None = None
    config: str | None = None
    allow_network: bool = False
    trust_remote_code: bool = False
    cache_dir: str | None = None


@attrs.frozen
class DatasetTexts:
    """Raw texts plus provenance (recorded in the report's ``dataset`` section)."""

    provider: str
    texts: tuple[str, ...]
    source: str
    license: str = "unknown"
    revision: str | None = None


@runtime_checkable
class DatasetProvider(Protocol):
    """Produces evaluation texts; window planning and tokenization are the core's job."""

    @property
    def name(self) -> str: ...

    @property
    def summary(self) -> str: ...

    def load(self, options: DatasetOptions) -> DatasetTexts:
        """Return the texts, or raise :class:`~invarlock_core.errors.DatasetError`."""
        ...
