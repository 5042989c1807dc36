"""Loading a checkpoint for an evaluation and describing it: the model under test and its record."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from invarlock_core.guarding import ModelUnderTest
from invarlock_core.report.sections import CheckpointRecord

if TYPE_CHECKING:
    from invarlock_core.evaluation.inputs import ResolvedInputs
    from invarlock_core.models import LoadedModel

__all__ = ["checkpoint_record", "load_checkpoint", "under_test"]


def load_checkpoint(inputs: ResolvedInputs, path: Path) -> LoadedModel:
    """Load ``path`` on the evaluation's device and dtype, with its network and code settings."""
    from invarlock_core.models import load_model

    request = inputs.request
    return load_model(
        path,
        device=inputs.device,
        dtype=request.dtype,
        trust_remote_code=request.trust_remote_code,
        allow_network=request.allow_network,
    )


def under_test(role: Literal["baseline", "subject"], loaded: LoadedModel, calibration: list[Any]) -> ModelUnderTest:
    return ModelUnderTest(
        role=role,
        model=loaded.model,
        checkpoint=loaded.path,
        digest=loaded.digest,
        calibration=calibration,
        device=loaded.device,
    )


def checkpoint_record(loaded: LoadedModel) -> CheckpointRecord:
    return CheckpointRecord(
        path=str(loaded.path),
        digest=loaded.digest,
        files=loaded.files,
        dtype=loaded.dtype,
        revision=loaded.revision,
        model_type=getattr(loaded.config, "model_type", None),
    )
