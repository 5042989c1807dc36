"""Memory planning: how much memory a task needs and how many devices that takes.

Estimates (sizes in GiB):

* evaluation and calibration: weights + KV cache + ``INVARLOCK_OVERHEAD_GB``, with
  KV = 2 · layers · batch · seq · kv_heads · head_dim · bytes;
* baseline setup: weights + ``MODEL_LOAD_OVERHEAD_GB``;
* edit or error-model creation: weights + ``EDIT_OVERHEAD_GB``;
* batch edit creation: 2 · weights + ``BATCH_EDIT_OVERHEAD_GB``.

``required_gpus = ceil(memory / (GPU_MEMORY_PER_DEVICE · CUDA_MEMORY_FRACTION))``: a task takes
more than one device only when its memory does not fit on one, and lowering the per-device memory
makes it ask for more. There is no adaptive under-allocation: the minimum is the requirement.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import attrs

from invarlock_core.errors import UsageError
from invarlock_core.json_files import read_json
from invarlock_core.scheduling.knobs import SchedulingKnobs
from invarlock_core.scheduling.tasks import Task, TaskType
from invarlock_core.serialization import structure, unstructure

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_SEQ_LEN",
    "GIB",
    "MemoryPlanner",
    "ModelProfile",
    "kv_cache_gb",
]

GIB = float(1 << 30)
DEFAULT_BATCH = 32
"""``INVARLOCK_EVAL_BATCH`` default."""
DEFAULT_SEQ_LEN = 512
"""``INVARLOCK_SEQ_LEN`` default."""

_EVAL_TYPES = frozenset({TaskType.CALIBRATION_RUN, TaskType.EVALUATE_EDIT, TaskType.EVALUATE_ERROR})


@attrs.frozen
class ModelProfile:
    """What the planner needs to know about a model (``state/model_profile.json``)."""

    name: str
    weights_gb: float
    num_layers: int = 32
    num_kv_heads: int = 8
    head_dim: int = 128
    dtype_bytes: int = 2
    is_moe: bool = False

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = unstructure(self)
        return data

    @classmethod
    def from_json(cls, data: Any) -> ModelProfile:
        return structure(data, cls)

    @classmethod
    def load(cls, path: str | Path) -> ModelProfile:
        return cls.from_json(read_json(path, what="model profile"))

    @classmethod
    def from_hf_config(cls, name: str, config: dict[str, Any], weights_gb: float) -> ModelProfile:
        """Build a profile from a Hugging Face ``config.json`` mapping and the checkpoint size."""
        layers = int(config.get("num_hidden_layers") or config.get("n_layer") or 1)
        heads = int(config.get("num_attention_heads") or config.get("n_head") or 1)
        hidden = int(config.get("hidden_size") or config.get("n_embd") or heads)
        kv_heads = int(config.get("num_key_value_heads") or heads)
        head_dim = int(config.get("head_dim") or max(1, hidden // heads))
        moe = bool(config.get("num_local_experts") or config.get("num_experts"))
        return cls(name, weights_gb, layers, kv_heads, head_dim, is_moe=moe)


def kv_cache_gb(profile: ModelProfile, batch: int, seq_len: int) -> float:
    """KV cache size in GiB: 2 · layers · batch · seq · kv_heads · head_dim · bytes."""
    size = (
        2
        * profile.num_layers
        * batch
        * seq_len
        * profile.num_kv_heads
        * profile.head_dim
        * profile.dtype_bytes
    )
    return size / GIB


@attrs.frozen
class MemoryPlanner:
    """Turns model profiles into per-task memory estimates and device counts."""

    knobs: SchedulingKnobs = attrs.field(factory=SchedulingKnobs)
    device_memory_gb: float = 80.0

    def __attrs_post_init__(self) -> None:
        if self.device_memory_gb <= 0:
            raise UsageError("per-device memory must be positive")

    @property
    def usable_per_device_gb(self) -> float:
        return self.device_memory_gb * self.knobs.cuda_memory_fraction

    def task_memory_gb(
        self,
        task_type: TaskType,
        profile: ModelProfile,
        *,
        batch: int = DEFAULT_BATCH,
        seq_len: int = DEFAULT_SEQ_LEN,
    ) -> float:
        """Memory estimate (GiB) of one task of ``task_type`` on ``profile``."""
        k = self.knobs
        weights = profile.weights_gb
        if task_type in _EVAL_TYPES:
            return weights + kv_cache_gb(profile, batch, seq_len) + k.invarlock_overhead_gb
        if task_type is TaskType.SETUP_BASELINE:
            return weights + k.model_load_overhead_gb
        if task_type in (TaskType.CREATE_EDIT, TaskType.CREATE_ERROR):
            return weights + k.edit_overhead_gb
        if task_type is TaskType.CREATE_EDITS_BATCH:
            return 2 * weights + k.batch_edit_overhead_gb
        return 0.0

    def required_gpus(self, memory_gb: float) -> int:
        """Devices needed for ``memory_gb``: one unless it exceeds a device's usable memory."""
        return max(1, math.ceil(memory_gb / self.usable_per_device_gb - 1e-9))

    def minimum_gpus(self, memory_gb: float) -> int:
        """No adaptive under-allocation: the minimum equals :meth:`required_gpus`."""
        return self.required_gpus(memory_gb)

    def plan(self, task: Task, profile: ModelProfile) -> Task:
        """``task`` with its memory estimate and ``required_gpus`` recomputed from ``profile``."""
        memory = self.task_memory_gb(
            task.type,
            profile,
            batch=task.batch_size or DEFAULT_BATCH,
            seq_len=task.seq_len or DEFAULT_SEQ_LEN,
        )
        return attrs.evolve(
            task,
            memory_gb=round(memory, 3),
            required_gpus=self.required_gpus(memory),
            model_size_gb=profile.weights_gb,
        )
