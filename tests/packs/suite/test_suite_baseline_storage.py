"""Baseline storage modes: snapshot_copy, snapshot_symlink, save_pretrained."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from invarlock_packs.suite.baseline import store_checkpoint


@pytest.mark.parametrize("mode", ["snapshot_copy", "snapshot_symlink", "save_pretrained"])
def test_storage_modes(tmp_path: Path, tiny_model_dir: Callable[..., Path], mode: str) -> None:
    from invarlock_core.models import load_model, validate_checkpoint_dir

    source = tiny_model_dir("gpt2")
    target = tmp_path / "baseline"
    store_checkpoint(source, target, mode)
    validate_checkpoint_dir(target)
    weights = target / "model.safetensors"
    assert weights.is_symlink() == (mode == "snapshot_symlink")
    if mode == "snapshot_copy":
        assert weights.read_bytes() == (source / "model.safetensors").read_bytes()
    assert load_model(target, device="cpu").tokenizer is not None
    assert not list(tmp_path.glob(".*"))  # no staging leftovers beside the target
