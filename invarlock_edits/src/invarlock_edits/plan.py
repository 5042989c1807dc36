"""What an edit will do to a checkpoint, declared before any weight is read.

An :class:`EditPlan` names every tensor the edit changes, adds or removes and every config key it
rewrites. The engine (:mod:`invarlock_edits.engine`) streams the checkpoint through the plan, and
the plan's declaration is what ``edit_metadata.json`` reports as the edit's declared coverage; the
engine also measures which tensors actually changed, byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from invarlock_edits.architecture import tied_pairs
from invarlock_edits.checkpoint import Checkpoint, TensorInfo

if TYPE_CHECKING:
    import torch

__all__ = ["AddedTensor", "EditPlan", "TensorChange", "TensorFn", "map_tensors"]

TensorFn = Callable[[str, "torch.Tensor"], "torch.Tensor"]
"""``fn(name, tensor) -> tensor``: ``tensor`` is private to the engine and may be modified in place."""


@attrs.frozen
class TensorChange:
    """A change of one stored tensor; ``shape`` is set when the edit changes the tensor's shape."""

    fn: TensorFn
    shape: tuple[int, ...] | None = None


@attrs.frozen
class AddedTensor:
    """A tensor the edit adds, written into the shard that holds ``shard_like``."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    make: Callable[[Checkpoint], torch.Tensor]
    shard_like: str


@attrs.frozen
class EditPlan:
    """Everything an edit does to a checkpoint."""

    changes: Mapping[str, TensorChange] = attrs.field(factory=dict)
    added: tuple[AddedTensor, ...] = ()
    removed: frozenset[str] = frozenset()
    config_updates: Mapping[str, Any] = attrs.field(factory=dict)
    """Top-level ``config.json`` keys and their new values."""
    tied: Mapping[str, str] = attrs.field(factory=dict)
    """``{alias: source}``: the alias is written as the *edited* source (edited once)."""
    details: Mapping[str, Any] = attrs.field(factory=dict)
    """Edit-specific facts for the metadata (positions, factors, resolved targets)."""

    @property
    def declared(self) -> list[str]:
        """Every tensor the edit declares it may change, add or remove (sorted)."""
        names = {*self.changes, *self.removed, *self.tied, *(t.name for t in self.added)}
        return sorted(names)


def map_tensors(
    checkpoint: Checkpoint,
    targets: Iterable[TensorInfo],
    fn: TensorFn,
    *,
    details: Mapping[str, Any] | None = None,
) -> EditPlan:
    """A plan applying ``fn`` to ``targets``, with tied weights edited once.

    When the checkpoint stores both halves of a tied pair (embedding and output head) and either
    is targeted, ``fn`` runs on the embedding only and the head is written as its edited copy.
    """
    ties = tied_pairs(checkpoint)
    changes: dict[str, TensorChange] = {}
    tied: dict[str, str] = {}
    for info in targets:
        source = ties.get(info.name, info.name)
        changes[source] = TensorChange(fn)
        for alias, alias_source in ties.items():
            if alias_source == source:
                tied[alias] = source
    return EditPlan(changes=changes, tied=tied, details=dict(details or {}))
