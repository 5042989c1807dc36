"""``sample``: the shipped offline English text, the default dataset.

``invarlock_core/data/sample_en.txt`` is original prose written for this project (about 70 KB of
encyclopedia-style paragraphs on everyday topics) and dedicated to the public domain under CC0 1.0.
It needs no network and no extra packages, so every evaluation can run on a laptop.
"""

from __future__ import annotations

from importlib import resources

import attrs

from invarlock_core.canonical import prefixed, sha256_hex
from invarlock_core.datasets.provider import DatasetOptions, DatasetTexts
from invarlock_core.errors import DatasetError

__all__ = ["SAMPLE_LICENSE", "SAMPLE_SOURCE", "SampleProvider"]

SAMPLE_SOURCE = "invarlock_core/data/sample_en.txt"
SAMPLE_LICENSE = "CC0-1.0"


@attrs.frozen
class SampleProvider:
    """Paragraphs of the shipped sample text (``max_samples`` keeps the first N)."""

    name: str = "sample"
    summary: str = "shipped offline English sample (original text, CC0-1.0); the default"

    def load(self, options: DatasetOptions) -> DatasetTexts:
        data = resources.files("invarlock_core").joinpath("data", "sample_en.txt").read_bytes()
        text = data.decode("utf-8")
        paragraphs = tuple(p.strip() for p in text.split("\n\n") if p.strip())
        if options.max_samples is not None:
            paragraphs = paragraphs[: options.max_samples]
        if not paragraphs:
            raise DatasetError("the shipped sample text is empty (broken installation?)")
        return DatasetTexts(
            provider=self.name,
            texts=paragraphs,
            source=SAMPLE_SOURCE,
            license=SAMPLE_LICENSE,
            revision=prefixed(sha256_hex(data)),
        )
