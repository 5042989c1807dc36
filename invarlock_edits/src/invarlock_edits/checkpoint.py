"""A read-only view of a Hugging Face checkpoint directory, tensor by tensor.

:class:`Checkpoint` parses every safetensors header (a few kilobytes each, no weights read) to
know each tensor's name, dtype, shape and shard, and loads one tensor at a time with
``safetensors.safe_open`` opened *per tensor*, so the memory map is released after every read
and resident memory never grows with the model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from math import prod
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from invarlock_core.errors import ModelLoadError
from invarlock_core.models import validate_checkpoint_dir
from invarlock_core.optional_deps import require
from invarlock_core.safetensors_files import INDEX_NAME, read_safetensors_header, shard_names

if TYPE_CHECKING:
    import torch

__all__ = [
    "INDEX_NAME",
    "LAYER_COUNT_KEYS",
    "METADATA_NAME",
    "Checkpoint",
    "TensorInfo",
    "dtype_itemsize",
    "read_safetensors_header",
]

METADATA_NAME = "edit_metadata.json"

_ITEMSIZE = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
}
LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")
"""Config keys that hold the number of transformer blocks, by architecture."""


def dtype_itemsize(dtype: str) -> int:
    """Bytes per element of a safetensors dtype string (``F32``, ``BF16``, ...)."""
    try:
        return _ITEMSIZE[dtype]
    except KeyError:
        raise ModelLoadError(f"unsupported safetensors dtype {dtype!r}") from None


@attrs.frozen
class TensorInfo:
    """One stored tensor: its name, safetensors dtype, shape and shard file (relative path)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    shard: str
    offset: int = 0
    """Absolute byte offset of the tensor's data in its shard file."""

    @property
    def numel(self) -> int:
        return prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * dtype_itemsize(self.dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)


@attrs.define(eq=False)
class Checkpoint:
    """A baseline checkpoint directory: config, tensor inventory and per-tensor loading."""

    path: Path
    config: dict[str, Any]
    tensors: dict[str, TensorInfo]
    """Every tensor, keyed by name, in shard order then file order."""
    shards: dict[str, list[str]]
    """Shard file (relative path) -> tensor names in that file, in file order."""
    shard_metadata: dict[str, dict[str, str]]
    indexed: bool
    """Whether the checkpoint has a ``model.safetensors.index.json``."""

    @classmethod
    def open(cls, path: str | Path) -> Checkpoint:
        """Inspect ``path``; unreadable or non-safetensors checkpoints raise ModelLoadError (exit 2)."""
        directory = validate_checkpoint_dir(path)
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise ModelLoadError(f"{directory / 'config.json'} is not a JSON object")
        index_path = directory / INDEX_NAME
        tensors: dict[str, TensorInfo] = {}
        shards: dict[str, list[str]] = {}
        shard_metadata: dict[str, dict[str, str]] = {}
        for shard in shard_names(directory):
            file = directory / shard
            if not file.is_file():
                raise ModelLoadError(f"{index_path} names a missing shard {shard}")
            entries, metadata = read_safetensors_header(file)
            shard_metadata[shard] = metadata
            names: list[str] = []
            for name, entry in entries.items():
                if name in tensors:
                    raise ModelLoadError(
                        f"tensor {name} is stored twice ({tensors[name].shard}, {shard})"
                    )
                tensors[name] = TensorInfo(
                    name, str(entry["dtype"]), tuple(entry["shape"]), shard, int(entry["start"])
                )
                names.append(name)
            shards[shard] = names
        return cls(directory, config, tensors, shards, shard_metadata, index_path.is_file())

    def __contains__(self, name: object) -> bool:
        return name in self.tensors

    def __iter__(self) -> Iterator[TensorInfo]:
        return iter(self.tensors.values())

    @property
    def model_type(self) -> str:
        return str(self.config.get("model_type", ""))

    @property
    def total_bytes(self) -> int:
        """Bytes of tensor data over all shards."""
        return sum(info.nbytes for info in self.tensors.values())

    def load(self, name: str) -> torch.Tensor:
        """Read one tensor from disk (the file is mapped only for the duration of the read)."""
        safe_open = require("safetensors", purpose="reading checkpoints").safe_open
        info = self.tensors[name]
        try:
            with safe_open(str(self.path / info.shard), framework="pt", device="cpu") as handle:
                tensor: torch.Tensor = handle.get_tensor(name)
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelLoadError(f"cannot read tensor {name} from {info.shard}: {first}") from exc
        return tensor

    def aux_files(self) -> list[Path]:
        """Files to copy next to edited weights: config, tokenizer, generation config, ...

        Weight files of any format are excluded (copying a ``pytorch_model.bin`` would smuggle
        unedited weights into the subject), as are hidden files and a previous edit's metadata.
        """
        skip_suffixes = {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf"}
        files = []
        for file in sorted(self.path.rglob("*")):
            rel = file.relative_to(self.path)
            if not file.is_file() or any(part.startswith(".") for part in rel.parts):
                continue
            if file.suffix in skip_suffixes or rel.as_posix() in {INDEX_NAME, METADATA_NAME}:
                continue
            files.append(rel)
        return files

    def num_layers(self) -> int | None:
        """The number of transformer blocks declared by the config, if any."""
        for key in LAYER_COUNT_KEYS:
            value = self.config.get(key)
            if isinstance(value, int):
                return value
        return None
