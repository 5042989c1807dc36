"""Which tensors of a model hold NaN or Inf, found with one reduction per tensor and no per-tensor
host round trip.

Each floating-point tensor is summed (half-precision types accumulate in float32); a sum is
non-finite iff the tensor holds a NaN/Inf or its finite values overflow the sum. The sums of one
device and dtype are stacked and moved to the host once, and only the flagged tensors are counted
value by value, so an overflowing but finite tensor is never reported.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from invarlock_core.optional_deps import require

__all__ = ["nonfinite_counts"]


def nonfinite_counts(tensors: Iterable[tuple[str, Any]]) -> dict[str, int]:
    """``name -> number of NaN/Inf values`` for the floating-point tensors among ``tensors`` that
    hold any (in the order given)."""
    torch = require("torch", purpose="finiteness checks")
    groups: dict[tuple[str, Any], list[tuple[str, Any]]] = {}
    order: dict[str, int] = {}
    for name, tensor in tensors:
        if tensor.is_floating_point() or tensor.is_complex():
            order.setdefault(name, len(order))
            groups.setdefault((str(tensor.device), tensor.dtype), []).append((name, tensor))
    found: dict[str, int] = {}
    with torch.no_grad():
        for (_device, dtype), members in groups.items():
            widen = dtype.is_floating_point and dtype.itemsize < 4
            sums = torch.stack(
                [t.sum(dtype=torch.float32) if widen else t.sum() for _n, t in members]
            )
            for index in (~torch.isfinite(sums)).nonzero().flatten().tolist():
                name, tensor = members[index]
                count = int((~torch.isfinite(tensor)).sum())
                if count:
                    found[name] = count
    return dict(sorted(found.items(), key=lambda item: order[item[0]]))
