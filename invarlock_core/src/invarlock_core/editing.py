"""The edit plugin contract: edit spec strings and the :class:`Edit` protocol.

An edit turns a baseline checkpoint directory into a new Hugging Face checkpoint directory
(quantization, pruning, low rank, or a deliberate fault injection) and returns its metadata.
Edits are registered through the ``invarlock_register_edits`` hook.

Spec strings follow ``name[:arg[:arg...]]``, e.g. ``quant_rtn:4:32:all``, ``fp8_quant:e5m2:ffn``,
``magnitude_prune:0.5:all`` or ``quant_rtn:clean:ffn`` (the ``clean`` sentinel is resolved by
the edit plugin from a tuned-parameters file).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import attrs

from invarlock_core.errors import UsageError

__all__ = ["ArtifactClass", "Edit", "EditParameter", "EditSpec"]

ArtifactClass = Literal[
    "validation_subject_checkpoint",
    "deployable_optimized_subject",
    "fault_injection_fixture",
]


@attrs.frozen
class EditParameter:
    """One positional parameter of an edit spec, for help and ``invarlock edit list``."""

    name: str
    kind: str
    """``int``, ``float``, ``choice``, ``scope`` or ``str``."""
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] = ()


@attrs.frozen
class EditSpec:
    """A parsed edit spec string: the edit's name and its positional arguments."""

    name: str
    args: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> EditSpec:
        """Split ``name:arg:arg``; empty names or empty arguments are usage errors."""
        parts = text.strip().split(":")
        if not parts[0]:
            raise UsageError(f"invalid edit spec {text!r}: expected NAME[:ARG...]")
        if any(part == "" for part in parts[1:]):
            raise UsageError(f"invalid edit spec {text!r}: empty argument")
        return cls(parts[0], tuple(parts[1:]))

    def __str__(self) -> str:
        return ":".join((self.name, *self.args))


@runtime_checkable
class Edit(Protocol):
    """An edit or fault injection that writes a new checkpoint from a baseline checkpoint."""

    @property
    def name(self) -> str: ...

    @property
    def summary(self) -> str: ...

    @property
    def artifact_class(self) -> ArtifactClass: ...

    @property
    def parameters(self) -> Sequence[EditParameter]: ...

    def apply(self, spec: EditSpec, *, baseline: Path, out: Path, seed: int) -> Mapping[str, Any]:
        """Write the edited checkpoint into the existing empty directory ``out``.

        Returns the edit metadata (JSON-ready; written as ``edit_metadata.json`` by the caller
        when the edit did not write it itself). Bad parameters raise
        :class:`~invarlock_core.errors.UsageError` naming the valid options.
        """
        ...
