"""Write a safetensors file one tensor at a time, hashing the bytes as they go out.

``safetensors.torch.save_file`` needs every tensor of a file in memory at once; for a single-shard
checkpoint that doubles resident memory. The format is simple (a little-endian u64 header length,
a JSON header with each tensor's dtype, shape and byte range, then the raw bytes in header order),
so the header is computed up front from the planned shapes and each tensor is produced, written
and released in turn.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from invarlock_edits.checkpoint import dtype_itemsize

if TYPE_CHECKING:
    import torch

__all__ = ["PlannedTensor", "safetensors_dtype", "torch_dtype", "write_safetensors"]

_DTYPE_NAMES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
}


def torch_dtype(dtype: str) -> torch.dtype:
    """The torch dtype of a safetensors dtype string."""
    import torch

    result: torch.dtype = getattr(torch, _DTYPE_NAMES[dtype])
    return result


def safetensors_dtype(dtype: torch.dtype) -> str:
    """The safetensors dtype string of a torch dtype."""
    name = str(dtype).removeprefix("torch.")
    for key, value in _DTYPE_NAMES.items():
        if value == name:
            return key
    raise ValueError(f"torch dtype {dtype} cannot be stored in safetensors")


@attrs.frozen
class PlannedTensor:
    """A tensor that will be written: name, safetensors dtype and shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        n = dtype_itemsize(self.dtype)
        for dim in self.shape:
            n *= dim
        return n


def _header(entries: Sequence[PlannedTensor], metadata: Mapping[str, str]) -> bytes:
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for entry in entries:
        end = offset + entry.nbytes
        header[entry.name] = {
            "dtype": entry.dtype,
            "shape": list(entry.shape),
            "data_offsets": [offset, end],
        }
        offset = end
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return raw + b" " * (-len(raw) % 8)


def write_safetensors(
    path: Path,
    entries: Sequence[PlannedTensor],
    produce: Callable[[str], torch.Tensor],
    *,
    metadata: Mapping[str, str] | None = None,
) -> str:
    """Write ``entries`` to ``path``, calling ``produce(name)`` for each in order; return the sha256.

    Every produced tensor must match its planned dtype and shape exactly (a mismatch is a bug in
    the edit and raises ``ValueError`` before anything is written for that tensor).
    """
    header = _header(entries, metadata or {})
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        for chunk in (struct.pack("<Q", len(header)), header):
            handle.write(chunk)
            digest.update(chunk)
        for entry in entries:
            tensor = produce(entry.name)
            actual = (safetensors_dtype(tensor.dtype), tuple(tensor.shape))
            if actual != (entry.dtype, entry.shape):
                raise ValueError(
                    f"edit produced {entry.name} as {actual[0]}{list(actual[1])}, "
                    f"planned {entry.dtype}{list(entry.shape)}"
                )
            data = tensor.detach().to("cpu").contiguous().reshape(-1).view(_byte_dtype()).numpy()
            view = data.data
            handle.write(view)
            digest.update(view)
            del tensor, data, view
        handle.flush()
        os.fsync(handle.fileno())
    return digest.hexdigest()


def _byte_dtype() -> torch.dtype:
    import torch

    return torch.uint8
