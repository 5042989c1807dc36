"""Stream a checkpoint through an :class:`~invarlock_edits.plan.EditPlan` into a new directory.

Shard by shard and tensor by tensor: each tensor is read (``safe_open`` per tensor), edited in
place, compared byte for byte with the original on disk (in bounded chunks, to measure what
actually changed), written into the output shard and released. Peak memory is about one tensor
(plus a cached edited embedding when a tied pair is stored twice), never the model twice.
The output keeps the baseline's shard layout, index and non-weight files (config, tokenizer).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from invarlock_core.families import classify, layer_index
from invarlock_edits.byte_compare import count_changed, stored_elements, tensor_elements
from invarlock_edits.checkpoint import INDEX_NAME, Checkpoint, TensorInfo
from invarlock_edits.plan import EditPlan
from invarlock_edits.safetensors_stream import PlannedTensor, write_safetensors

if TYPE_CHECKING:
    import torch

__all__ = ["Coverage", "TensorRecord", "WriteResult", "write_edited_checkpoint"]

_COPY_BYTES = 1 << 20
Progress = Callable[[int], None]


@attrs.frozen
class TensorRecord:
    """What happened to one declared tensor."""

    name: str
    family: str
    elements: int
    elements_changed: int
    shape_before: tuple[int, ...] | None
    shape_after: tuple[int, ...] | None


@attrs.frozen
class Coverage:
    """Declared and measured coverage of an edit."""

    tensors_total: int
    elements_total: int
    records: tuple[TensorRecord, ...]
    tied: dict[str, str]
    config_changes: dict[str, dict[str, Any]]

    def to_json(self, scope: str | None) -> dict[str, Any]:
        changed = [r for r in self.records if r.elements_changed or r.shape_before != r.shape_after]
        families: dict[str, int] = {}
        for record in changed:
            families[record.family] = families.get(record.family, 0) + 1
        layers = sorted({i for r in changed if (i := layer_index(r.name)) is not None})
        return {
            "scope": scope,
            "tensors_total": self.tensors_total,
            "tensors_declared": len(self.records),
            "tensors_changed": len(changed),
            "elements_total": self.elements_total,
            "elements_changed": sum(r.elements_changed for r in self.records),
            "declared": [r.name for r in self.records],
            "changed": [r.name for r in changed],
            "added": [r.name for r in self.records if r.shape_before is None],
            "removed": [r.name for r in self.records if r.shape_after is None],
            "reshaped": [
                r.name
                for r in self.records
                if r.shape_before is not None
                and r.shape_after is not None
                and r.shape_before != r.shape_after
            ],
            "tied": dict(sorted(self.tied.items())),
            "families": dict(sorted(families.items())),
            "layers": layers,
            "config_changes": self.config_changes,
            "tensors": {
                r.name: {
                    "family": r.family,
                    "elements": r.elements,
                    "elements_changed": r.elements_changed,
                    "shape_before": list(r.shape_before) if r.shape_before is not None else None,
                    "shape_after": list(r.shape_after) if r.shape_after is not None else None,
                }
                for r in self.records
            },
        }


@attrs.frozen
class WriteResult:
    """The written checkpoint's files (relative path -> sha256 hex) and the edit's coverage."""

    files: dict[str, str]
    coverage: Coverage


class _Producer:
    """Produces each output tensor on demand and records what changed."""

    def __init__(
        self, checkpoint: Checkpoint, plan: EditPlan, device: str, progress: Progress | None
    ):
        self.checkpoint = checkpoint
        self.plan = plan
        self.device = device
        self.progress = progress
        self.added = {t.name: t for t in plan.added}
        self.uses: dict[str, int] = {}
        """Tied sources: how many more times (source itself + aliases) the edited tensor is needed."""
        for source in plan.tied.values():
            self.uses[source] = self.uses.get(source, 1) + 1
        self.cache: dict[str, torch.Tensor] = {}
        self.records: dict[str, TensorRecord] = {}

    def _edited(self, name: str) -> torch.Tensor:
        """The edited tensor ``name``; a tied source is edited once and cached for its aliases."""
        tensor = self.cache.get(name)
        if tensor is None:
            tensor = self.checkpoint.load(name)
            change = self.plan.changes.get(name)
            if change is not None:
                tensor = change.fn(name, tensor.to(self.device)).to("cpu")
        if name in self.uses:
            self.uses[name] -= 1
            if self.uses[name] > 0:
                self.cache[name] = tensor
            else:
                self.cache.pop(name, None)
        return tensor

    def __call__(self, name: str) -> torch.Tensor:
        info = self.checkpoint.tensors.get(name)
        if name in self.added:
            tensor = self.added[name].make(self.checkpoint)
            self.record(name, None, tuple(tensor.shape), tensor.numel())
        else:
            assert info is not None
            tensor = self._edited(self.plan.tied.get(name, name))
            if name in self.plan.changes or name in self.plan.tied:
                shape = tuple(tensor.shape)
                changed = (
                    count_changed(stored_elements(info, self._path(info)), tensor_elements(tensor))
                    if shape == info.shape
                    else tensor.numel()
                )
                self.record(name, info.shape, shape, changed)
        if self.progress is not None:
            self.progress(tensor.numel() * tensor.element_size())
        return tensor

    def _path(self, info: TensorInfo) -> Path:
        return self.checkpoint.path / info.shard

    def record(
        self, name: str, before: tuple[int, ...] | None, after: tuple[int, ...] | None, changed: int
    ) -> None:
        elements = 1
        for dim in after if after is not None else before or ():
            elements *= dim
        self.records[name] = TensorRecord(name, classify(name), elements, changed, before, after)


def _planned_shards(checkpoint: Checkpoint, plan: EditPlan) -> dict[str, list[PlannedTensor]]:
    shards: dict[str, list[PlannedTensor]] = {}
    for shard, names in checkpoint.shards.items():
        entries = []
        for name in names:
            if name in plan.removed:
                continue
            info = checkpoint.tensors[name]
            change = plan.changes.get(plan.tied.get(name, name))
            shape = change.shape if change is not None and change.shape is not None else info.shape
            entries.append(PlannedTensor(name, info.dtype, shape))
        shards[shard] = entries
    for added in plan.added:
        if added.name in checkpoint:
            raise ValueError(f"edit adds {added.name}, which the checkpoint already has")
        shard = checkpoint.tensors[added.shard_like].shard
        shards[shard].append(PlannedTensor(added.name, added.dtype, added.shape))
    return {shard: entries for shard, entries in shards.items() if entries}


def _copy_hashed(source: Path, target: Path) -> str:
    digest = hashlib.sha256()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(source, "rb") as reader, open(target, "wb") as writer:
        while chunk := reader.read(_COPY_BYTES):
            writer.write(chunk)
            digest.update(chunk)
        writer.flush()
        os.fsync(writer.fileno())
    return digest.hexdigest()


def _write_json(target: Path, value: Any) -> str:
    data = (json.dumps(value, indent=2, allow_nan=False) + "\n").encode("utf-8")
    with open(target, "wb") as writer:
        writer.write(data)
        writer.flush()
        os.fsync(writer.fileno())
    return hashlib.sha256(data).hexdigest()


def write_edited_checkpoint(
    checkpoint: Checkpoint,
    plan: EditPlan,
    out: Path,
    *,
    device: str = "cpu",
    progress: Progress | None = None,
) -> WriteResult:
    """Write the edited checkpoint into the existing (empty) directory ``out``."""
    unknown = sorted(n for n in [*plan.changes, *plan.removed, *plan.tied] if n not in checkpoint)
    if unknown:
        raise ValueError(
            f"edit plan names tensors the checkpoint does not have: {', '.join(unknown[:5])}"
        )
    files: dict[str, str] = {}
    producer = _Producer(checkpoint, plan, device, progress)
    shards = _planned_shards(checkpoint, plan)
    for shard, entries in shards.items():
        metadata = {**checkpoint.shard_metadata.get(shard, {}), "format": "pt"}
        files[shard] = write_safetensors(out / shard, entries, producer, metadata=metadata)
    for name in sorted(plan.removed):
        info = checkpoint.tensors[name]
        producer.record(name, info.shape, None, info.numel)
    if checkpoint.indexed or len(shards) > 1:
        index = _index(checkpoint, shards)
        files[INDEX_NAME] = _write_json(out / INDEX_NAME, index)
    config_changes: dict[str, dict[str, Any]] = {}
    for rel in checkpoint.aux_files():
        if rel.as_posix() == "config.json" and plan.config_updates:
            config = dict(checkpoint.config)
            for key, value in plan.config_updates.items():
                config_changes[key] = {"from": config.get(key), "to": value}
                config[key] = value
            files["config.json"] = _write_json(out / "config.json", config)
        else:
            files[rel.as_posix()] = _copy_hashed(checkpoint.path / rel, out / rel)
    records = tuple(producer.records[name] for name in sorted(producer.records))
    coverage = Coverage(
        tensors_total=len(checkpoint.tensors),
        elements_total=sum(info.numel for info in checkpoint),
        records=records,
        tied=dict(plan.tied),
        config_changes=config_changes,
    )
    return WriteResult(dict(sorted(files.items())), coverage)


def _index(checkpoint: Checkpoint, shards: dict[str, list[PlannedTensor]]) -> dict[str, Any]:
    original: dict[str, Any] = {}
    if checkpoint.indexed:
        original = json.loads((checkpoint.path / INDEX_NAME).read_text(encoding="utf-8"))
    metadata = dict(original.get("metadata") or {})
    metadata["total_size"] = sum(entry.nbytes for entries in shards.values() for entry in entries)
    weight_map = {entry.name: shard for shard, entries in shards.items() for entry in entries}
    return {**original, "metadata": metadata, "weight_map": dict(sorted(weight_map.items()))}
