"""InvarLock edits and error injections as plugins.

The built-in plugin (entry point ``invarlock_edits.builtin``) registers four validation-subject
edits (``quant_rtn``, ``fp8_quant``, ``magnitude_prune``, ``lowrank_svd``), twelve error
injections and the ``invarlock edit apply|list`` commands. Third-party plugins can build their
own edits on :class:`StreamingEdit`: a planner that returns an :class:`EditPlan` gets spec
parsing, shard-by-shard writing, measured coverage and ``edit_metadata.json`` for free.

Importing this package does not import torch.
"""

from __future__ import annotations

from invarlock_edits.builtin_edits import scope_param
from invarlock_edits.checkpoint import Checkpoint, TensorInfo
from invarlock_edits.diff import diff_checkpoints
from invarlock_edits.edit_command import apply_edit
from invarlock_edits.kernels import tensor_generator
from invarlock_edits.metadata import (
    METADATA_SCHEMA,
    Detection,
    SubjectLabels,
    check_edit_output,
    read_edit_metadata,
    validate_edit_metadata,
)
from invarlock_edits.params import ParamSpec
from invarlock_edits.plan import AddedTensor, EditPlan, TensorChange, map_tensors
from invarlock_edits.scopes import Scope, parse_scope
from invarlock_edits.streaming_edit import StreamingEdit
from invarlock_edits.version import __version__

__all__ = [
    "METADATA_SCHEMA",
    "AddedTensor",
    "Checkpoint",
    "Detection",
    "EditPlan",
    "ParamSpec",
    "Scope",
    "StreamingEdit",
    "SubjectLabels",
    "TensorChange",
    "TensorInfo",
    "__version__",
    "apply_edit",
    "check_edit_output",
    "diff_checkpoints",
    "map_tensors",
    "parse_scope",
    "read_edit_metadata",
    "scope_param",
    "tensor_generator",
    "validate_edit_metadata",
]
