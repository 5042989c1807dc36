"""Which parameters of a subject are bit-identical to the baseline's, decided from stored bytes.

Most edits touch part of a model (quantize the FFN, prune some layers), and a guard measuring an
untouched matrix of the subject would repeat the baseline's measurement exactly. ``invarlock
evaluate`` therefore compares the two checkpoints' safetensors files right after loading the
subject and tells the guards (``ModelUnderTest.unchanged``) which parameters they may take from
the baseline.

A parameter counts as unchanged only when all of this holds:

* both checkpoints have byte-identical ``config.json`` files (so both load the same way: same
  architecture, dtype resolution and weight tying);
* each stored tensor the parameter can be loaded from (its own name and the names of the
  parameters tied to it, in either checkpoint) is stored in both checkpoints with the same dtype,
  the same shape and the same bytes;
* at least one such stored tensor exists (a parameter stored in neither checkpoint is freshly
  initialised at load, never unchanged).

Bytes are compared, not digests: two shard files with equal sha256 (known from loading) are equal
without reading them again; otherwise the tensors' byte ranges are compared in 64 KiB chunks
through memory maps. Anything unreadable gives the empty set, and the guards then measure
everything as before: the comparison only ever saves work.
"""

from __future__ import annotations

import mmap
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from invarlock_core.errors import ModelLoadError
from invarlock_core.safetensors_files import read_safetensors_header, shard_names

__all__ = [
    "StoredTensor",
    "identical_stored_tensors",
    "storage_groups",
    "stored_tensors",
    "unchanged_parameters",
]

_CHUNK = 64 << 10
"""Bytes per comparison: slices this small are copied from the page cache at memory speed
(larger ones are separate allocations, each page-faulted in: about 15x slower per byte)."""
_CONFIG_NAME = "config.json"


class StoredTensor(NamedTuple):
    """Where one tensor's bytes are: shard file (relative), dtype, shape and byte range."""

    shard: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    length: int


def stored_tensors(directory: Path) -> dict[str, StoredTensor]:
    """Every tensor stored in the checkpoint's safetensors files, by name."""
    found: dict[str, StoredTensor] = {}
    for shard in shard_names(directory):
        entries, _metadata = read_safetensors_header(directory / shard)
        for name, entry in entries.items():
            begin, end = entry["data_offsets"]
            found[name] = StoredTensor(
                shard, entry["dtype"], tuple(entry["shape"]), entry["start"], end - begin
            )
    return found


def _equal_ranges(left: mmap.mmap, right: mmap.mmap, a: StoredTensor, b: StoredTensor) -> bool:
    """Whether two byte ranges of two memory maps are equal, compared chunk by chunk (the first
    differing chunk ends it)."""
    for offset in range(0, a.length, _CHUNK):
        size = min(_CHUNK, a.length - offset)
        if (
            left[a.start + offset : a.start + offset + size]
            != right[b.start + offset : b.start + offset + size]
        ):
            return False
    return True


def _compare(
    baseline: Path,
    subject: Path,
    pairs: Mapping[tuple[str, str], list[tuple[str, StoredTensor, StoredTensor]]],
) -> set[str]:
    same: set[str] = set()
    for (left_shard, right_shard), members in pairs.items():
        with (
            open(baseline / left_shard, "rb") as left_file,
            open(subject / right_shard, "rb") as right_file,
            mmap.mmap(left_file.fileno(), 0, access=mmap.ACCESS_READ) as left,
            mmap.mmap(right_file.fileno(), 0, access=mmap.ACCESS_READ) as right,
        ):
            same.update(name for name, a, b in members if _equal_ranges(left, right, a, b))
    return same


def identical_stored_tensors(
    baseline: Path,
    subject: Path,
    *,
    names: Collection[str] | None = None,
    file_digests: tuple[Mapping[str, str], Mapping[str, str]] | None = None,
) -> tuple[frozenset[str], frozenset[str]]:
    """``(identical, stored)``: the names stored in both checkpoints with the same dtype, shape
    and bytes (only among ``names`` when given), and every name stored in either.
    ``file_digests`` (relative path -> sha256 of each checkpoint, as loading computed them) lets
    equal shard files skip the byte comparison.

    Raises :class:`~invarlock_core.errors.ModelLoadError`, ``OSError``, ``ValueError``,
    ``TypeError`` or ``KeyError`` for unreadable files or malformed headers.
    """
    left, right = stored_tensors(baseline), stored_tensors(subject)
    left_digests, right_digests = file_digests or ({}, {})
    identical: set[str] = set()
    pairs: dict[tuple[str, str], list[tuple[str, StoredTensor, StoredTensor]]] = {}
    common = left.keys() & right.keys()
    for name in common if names is None else common.intersection(names):
        a, b = left[name], right[name]
        if (a.dtype, a.shape, a.length) != (b.dtype, b.shape, b.length):
            continue
        digest = left_digests.get(a.shard)
        if digest is not None and digest == right_digests.get(b.shard) and a.start == b.start:
            identical.add(name)
        else:
            pairs.setdefault((a.shard, b.shard), []).append((name, a, b))
    identical |= _compare(baseline, subject, pairs)
    return frozenset(identical), frozenset(left.keys() | right.keys())


def storage_groups(parameters: Iterable[tuple[str, Any]]) -> list[list[str]]:
    """Parameter names grouped by the storage they share (one group per tensor; tied parameters
    share a group), in order; ``parameters`` as ``model.named_parameters(remove_duplicate=False)``
    gives them."""
    groups: dict[tuple[int, int, tuple[int, ...]], list[str]] = {}
    for name, parameter in parameters:
        key = (parameter.data_ptr(), parameter.storage_offset(), tuple(parameter.shape))
        groups.setdefault(key, []).append(name)
    return list(groups.values())


def unchanged_parameters(
    model: Any,
    baseline: Path,
    subject: Path,
    *,
    file_digests: tuple[Mapping[str, str], Mapping[str, str]] | None = None,
) -> frozenset[str]:
    """Names of ``model``'s parameters (every tied name) that are bit-identical to the baseline's.

    ``model`` must be the subject exactly as loaded from ``subject`` (nothing modified since).
    The empty set when the configs differ or a file cannot be read.
    """
    try:
        left, right = file_digests or ({}, {})
        if _CONFIG_NAME in left and _CONFIG_NAME in right:
            same_config = left[_CONFIG_NAME] == right[_CONFIG_NAME]
        else:
            same_config = (baseline / _CONFIG_NAME).read_bytes() == (
                subject / _CONFIG_NAME
            ).read_bytes()
        if not same_config:
            return frozenset()
        groups = storage_groups(model.named_parameters(remove_duplicate=False))
        identical, stored = identical_stored_tensors(
            baseline,
            subject,
            names={name for names in groups for name in names},
            file_digests=file_digests,
        )
    except (OSError, ValueError, TypeError, KeyError, ModelLoadError):
        return frozenset()
    unchanged: set[str] = set()
    for names in groups:
        sources = [name for name in names if name in stored]
        if sources and all(name in identical for name in sources):
            unchanged.update(names)
    return frozenset(unchanged)
