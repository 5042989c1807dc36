"""Helpers shared by the edits tests (imported as a plain module: tests/edits is on sys.path)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_tensors(directory: Path) -> dict[str, Any]:
    """Every tensor of a checkpoint, read with safetensors itself (not with our reader)."""
    from safetensors.torch import load_file

    tensors: dict[str, Any] = {}
    for shard in sorted(directory.glob("*.safetensors")):
        tensors.update(load_file(str(shard)))
    return tensors


def tensor_bytes(tensor: Any) -> Any:
    """A tensor's raw bytes as a flat uint8 tensor (bitwise comparison: NaN == same NaN)."""
    import torch

    return tensor.reshape(-1).view(torch.uint8)


def changed_tensors(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    """Names added, removed, reshaped or with different bytes between two state dicts."""
    import torch

    return {
        name
        for name in before.keys() | after.keys()
        if name not in before
        or name not in after
        or before[name].shape != after[name].shape
        or not torch.equal(tensor_bytes(before[name]), tensor_bytes(after[name]))
    }


def copy_non_weight_files(source: Path, target: Path) -> None:
    """Copy config and tokenizer files (everything but ``*.safetensors``) of a checkpoint."""
    import shutil

    for file in source.iterdir():
        if file.is_file() and file.suffix != ".safetensors":
            shutil.copy(file, target / file.name)


def read_metadata(directory: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(
        (directory / "edit_metadata.json").read_text(encoding="utf-8")
    )
    return result
