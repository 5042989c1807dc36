"""The ``gaussian_noise`` edit: seeded Gaussian noise proportional to each matrix's RMS.

``W <- W + relative_std * rms(W) * N(0, 1)`` for every weight matrix in the scope, with a
generator seeded by ``(seed, tensor name)`` so that the same seed gives the same checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from invarlock_edits import (
    Checkpoint,
    EditPlan,
    ParamSpec,
    StreamingEdit,
    map_tensors,
    scope_param,
    tensor_generator,
)

if TYPE_CHECKING:
    import torch

__all__ = ["GAUSSIAN_NOISE"]


def _plan(checkpoint: Checkpoint, params: Mapping[str, Any], seed: int) -> EditPlan:
    relative_std = float(params["relative_std"])

    def add_noise(name: str, tensor: torch.Tensor) -> torch.Tensor:
        import torch

        values = tensor.float()
        rms = values.pow(2).mean().sqrt()
        noise = torch.randn(values.shape, generator=tensor_generator(seed, name))
        return tensor.copy_(values + relative_std * rms * noise.to(values.device))

    return map_tensors(checkpoint, params["scope"].select(checkpoint), add_noise)


GAUSSIAN_NOISE = StreamingEdit(
    name="gaussian_noise",
    summary="add seeded Gaussian noise scaled to each weight matrix's RMS",
    artifact_class="validation_subject_checkpoint",
    specs=(
        ParamSpec(
            "relative_std",
            "float",
            0.01,
            "noise std as a fraction of the matrix RMS",
            minimum=0.0,
            maximum=10.0,
            exclusive_minimum=True,
        ),
        scope_param("ffn"),
    ),
    planner=_plan,
    storage_format="dense_safetensors",
    description="W <- W + relative_std * rms(W) * N(0, 1), seeded per tensor.",
    producer=("invarlock-plugin-example", "0.1.0"),
)
