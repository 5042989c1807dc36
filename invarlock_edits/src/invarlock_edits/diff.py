"""Measured coverage of any edited checkpoint: compare it with its baseline, byte for byte.

Edits built on :class:`~invarlock_edits.streaming_edit.StreamingEdit` measure their coverage
while writing. For a third-party edit that writes its checkpoint some other way (or a
bring-your-own-edit subject), :func:`diff_checkpoints` reads both checkpoints' tensors in bounded
chunks (no torch, no memory map) and reports the same coverage.
"""

from __future__ import annotations

from invarlock_core.families import classify
from invarlock_edits.byte_compare import count_changed, stored_elements
from invarlock_edits.checkpoint import Checkpoint
from invarlock_edits.engine import Coverage, TensorRecord

__all__ = ["diff_checkpoints"]


def diff_checkpoints(baseline: Checkpoint, subject: Checkpoint) -> Coverage:
    """Every tensor that differs between ``baseline`` and ``subject`` (added, removed, reshaped, changed)."""
    records = []
    for name in sorted(set(baseline.tensors) | set(subject.tensors)):
        old = baseline.tensors.get(name)
        new = subject.tensors.get(name)
        if old is None or new is None or old.shape != new.shape or old.dtype != new.dtype:
            elements = (new or old).numel if (new or old) is not None else 0  # type: ignore[union-attr]
            records.append(
                TensorRecord(
                    name,
                    classify(name),
                    elements,
                    elements,
                    old.shape if old is not None else None,
                    new.shape if new is not None else None,
                )
            )
            continue
        changed = count_changed(
            stored_elements(old, baseline.path / old.shard),
            stored_elements(new, subject.path / new.shard),
        )
        if changed:
            records.append(
                TensorRecord(name, classify(name), old.numel, changed, old.shape, new.shape)
            )
    config_changes = {
        key: {"from": baseline.config.get(key), "to": subject.config.get(key)}
        for key in sorted(set(baseline.config) | set(subject.config))
        if baseline.config.get(key) != subject.config.get(key)
    }
    return Coverage(
        tensors_total=len(baseline.tensors),
        elements_total=sum(info.numel for info in baseline),
        records=tuple(records),
        tied={},
        config_changes=config_changes,
    )
