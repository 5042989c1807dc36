"""Edit scopes: which weight tensors of a checkpoint an edit touches.

A scope is ``GROUP[+GROUP...][@layer=LAYERS]``:

* groups: ``ffn`` (dense MLPs and MoE experts, fused 3-D expert tensors included), ``attn``,
  ``router`` (MoE gates), ``embed`` (token/position embeddings and the output head) and ``all``
  (``ffn+attn+router``: every weight matrix inside the transformer blocks);
* ``LAYERS`` is a comma list of block indices and inclusive ranges (``31``, ``0-3``, ``0,5,-1``);
  negative indices count from the last block. A layer filter keeps only tensors inside blocks.

Only weight matrices are in scope (two or more dimensions, not biases, not norms): edits change
what a layer computes, never its normalisation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import attrs

from invarlock_core.errors import UsageError
from invarlock_core.families import Family, classify, layer_index
from invarlock_edits.checkpoint import Checkpoint, TensorInfo

__all__ = ["SCOPE_GROUPS", "Scope", "is_weight_matrix", "ordered", "parse_scope"]

SCOPE_GROUPS: dict[str, frozenset[Family]] = {
    "ffn": frozenset({"ffn", "expert_ffn"}),
    "attn": frozenset({"attn"}),
    "router": frozenset({"router"}),
    "embed": frozenset({"embed"}),
    "all": frozenset({"ffn", "expert_ffn", "attn", "router"}),
}
_LAYER_ITEM = re.compile(r"^(-?\d+)(?:-(\d+))?$")


@attrs.frozen
class Scope:
    """A parsed scope: module families plus an optional layer filter."""

    text: str
    families: frozenset[Family]
    layers: tuple[tuple[int, int], ...] | None = None
    """Inclusive ``(start, stop)`` ranges; negative values count from the end."""

    def layer_set(self, num_layers: int | None) -> set[int] | None:
        """The selected block indices, resolved against the model's block count."""
        if self.layers is None:
            return None
        chosen: set[int] = set()
        for start, stop in self.layers:
            if start < 0 or stop < 0:
                if num_layers is None:
                    raise UsageError(
                        f"scope {self.text!r}: negative layers need a config with a layer count"
                    )
                start = start + num_layers if start < 0 else start
                stop = stop + num_layers if stop < 0 else stop
            chosen.update(range(start, stop + 1))
        if num_layers is not None and chosen and max(chosen) >= num_layers:
            raise UsageError(
                f"scope {self.text!r}: the model has {num_layers} layers (valid 0-{num_layers - 1})"
            )
        return chosen

    def select(self, checkpoint: Checkpoint) -> list[TensorInfo]:
        """The weight matrices of ``checkpoint`` in this scope, in block order."""
        layers = self.layer_set(checkpoint.num_layers())
        chosen = []
        for info in checkpoint:
            if not is_weight_matrix(info) or classify(info.name) not in self.families:
                continue
            if layers is not None and layer_index(info.name) not in layers:
                continue
            chosen.append(info)
        return ordered(chosen)


def is_weight_matrix(info: TensorInfo) -> bool:
    """Two or more dimensions, a floating dtype, not a bias and not a norm."""
    return (
        info.ndim >= 2
        and info.dtype in {"F64", "F32", "F16", "BF16"}
        and not info.name.endswith(".bias")
        and classify(info.name) != "norm"
    )


def ordered(infos: Iterable[TensorInfo]) -> list[TensorInfo]:
    """Sort by block index (tensors outside blocks first), then by name: a stable 'first'."""

    def key(info: TensorInfo) -> tuple[int, str]:
        index = layer_index(info.name)
        return (-1 if index is None else index, info.name)

    return sorted(infos, key=key)


def parse_scope(text: str) -> Scope:
    """Parse ``ffn``, ``attn+router``, ``ffn@layer=31``, ``all@layer=0-3,-1``; UsageError otherwise."""
    valid = ", ".join(SCOPE_GROUPS)
    groups_text, at, filter_text = text.partition("@")
    families: set[Family] = set()
    for group in groups_text.split("+"):
        if group not in SCOPE_GROUPS:
            raise UsageError(
                f"invalid scope {text!r}: unknown group {group!r}; valid: {valid} "
                "(optionally GROUP+GROUP and @layer=N[,N-M])"
            )
        families |= SCOPE_GROUPS[group]
    layers: tuple[tuple[int, int], ...] | None = None
    if at:
        key, eq, value = filter_text.partition("=")
        if key not in {"layer", "layers"} or not eq or not value:
            raise UsageError(f"invalid scope {text!r}: expected @layer=N, @layer=N-M or @layer=N,M")
        ranges = []
        for item in value.split(","):
            match = _LAYER_ITEM.match(item.strip())
            if not match:
                raise UsageError(f"invalid scope {text!r}: bad layer {item!r} (expected N or N-M)")
            start = int(match.group(1))
            stop = int(match.group(2)) if match.group(2) is not None else start
            if stop < start and start >= 0:
                raise UsageError(f"invalid scope {text!r}: empty layer range {item!r}")
            ranges.append((start, stop))
        layers = tuple(ranges)
    return Scope(text, frozenset(families), layers)
