"""The tiny-model builder produces real, trained, deterministic checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from invarlock_core.canonical import file_sha256
from invarlock_core.errors import UsageError
from invarlock_core.models import load_model
from invarlock_core.testing import ARCHITECTURES, build_tiny_model, sample_text, tiny_model


def test_sample_text_is_substantial_english() -> None:
    text = sample_text()
    assert len(text) > 60_000
    assert text.isascii()
    assert " the " in text


@pytest.mark.parametrize("arch", [a for a in ARCHITECTURES if a != "bert"])
def test_decoder_models_load_and_learned_something(arch: str) -> None:
    import torch

    loaded = load_model(tiny_model(arch), device="cpu")
    ids = loaded.tokenizer(sample_text()[:4000], return_tensors="pt")["input_ids"][:, :128]
    with torch.no_grad():
        loss = loaded.model(input_ids=ids, labels=ids).loss.item()
    # An untrained model sits near ln(512) = 6.24 nats per token.
    assert loss < 5.5


def test_builds_are_deterministic(tmp_path: Path) -> None:
    a = build_tiny_model("llama", tmp_path / "a", train_steps=3)
    b = build_tiny_model("llama", tmp_path / "b", train_steps=3)
    assert file_sha256(a / "model.safetensors") == file_sha256(b / "model.safetensors")


def test_unknown_architecture() -> None:
    with pytest.raises(UsageError, match="valid: gpt2"):
        tiny_model("gpt5")
