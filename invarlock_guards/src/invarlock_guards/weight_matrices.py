"""The weight matrices guards measure: every 2-D parameter, and each expert of a 3-D expert tensor.

Tied parameters appear once (under their first name). Mixture-of-experts checkpoints in
transformers 5 fuse experts into ``[experts, rows, cols]`` tensors; each expert is measured as its
own matrix, named ``<parameter>[<expert>]``. Norm-layer vectors are not matrices and are left to the
invariants guard.
"""

from __future__ import annotations

from typing import Any

import attrs

from invarlock_core.families import Family, classify

__all__ = ["WeightMatrix", "weight_matrices"]


@attrs.frozen
class WeightMatrix:
    """One matrix of a model: its stable name, family, tensor (a view, never a copy) and the name
    of the parameter it belongs to."""

    name: str
    family: Family
    tensor: Any
    parameter: str


def weight_matrices(model: Any) -> list[WeightMatrix]:
    """The model's matrices, sorted by name."""
    found: list[WeightMatrix] = []
    for name, parameter in model.named_parameters():
        family = classify(name)
        if family == "norm":
            continue
        if parameter.ndim == 2:
            found.append(WeightMatrix(name, family, parameter, name))
        elif parameter.ndim == 3:
            found.extend(
                WeightMatrix(f"{name}[{expert}]", family, parameter[expert], name)
                for expert in range(parameter.shape[0])
            )
    return sorted(found, key=lambda matrix: matrix.name)
