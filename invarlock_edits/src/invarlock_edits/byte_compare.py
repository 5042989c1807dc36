"""Count elements whose stored bytes differ, reading tensors from disk in bounded chunks.

Bitwise comparison is the honest notion of "changed" for coverage: a NaN that stays the same NaN
is unchanged, and ``-0.0`` replacing ``+0.0`` is a change.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invarlock_edits.checkpoint import TensorInfo, dtype_itemsize

if TYPE_CHECKING:
    import torch

__all__ = ["count_changed", "stored_elements", "tensor_elements"]

_CHUNK_BYTES = 16 << 20


def _step(itemsize: int) -> int:
    return max(1, _CHUNK_BYTES // itemsize)


def _int_type(itemsize: int) -> Any:
    import numpy as np

    return {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[itemsize]


def stored_elements(info: TensorInfo, path: Path) -> Iterator[Any]:
    """A stored tensor's elements as unsigned-integer arrays (raw bit patterns), chunk by chunk."""
    import numpy as np

    itemsize = dtype_itemsize(info.dtype)
    ints = _int_type(itemsize)
    step = _step(itemsize)
    with open(path, "rb") as handle:
        handle.seek(info.offset)
        for start in range(0, info.numel, step):
            count = min(step, info.numel - start)
            yield np.frombuffer(handle.read(count * itemsize), dtype=ints)


def tensor_elements(tensor: torch.Tensor) -> Iterator[Any]:
    """An in-memory tensor's elements as raw bit patterns, in the same chunks as :func:`stored_elements`."""
    import torch

    itemsize = tensor.element_size()
    flat = (
        tensor.detach()
        .to("cpu")
        .contiguous()
        .reshape(-1)
        .view(torch.uint8)
        .numpy()
        .view(_int_type(itemsize))
    )
    step = _step(itemsize)
    for start in range(0, flat.shape[0], step):
        yield flat[start : start + step]


def count_changed(old: Iterator[Any], new: Iterator[Any]) -> int:
    """Positions where two equally chunked bit-pattern streams differ."""
    import numpy as np

    return sum(int(np.count_nonzero(a != b)) for a, b in zip(old, new))
