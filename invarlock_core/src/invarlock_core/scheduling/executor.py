"""The executor plugin contract (filled in by the scheduling work)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["ExecutorFactory"]


@runtime_checkable
class ExecutorFactory(Protocol):
    """Creates executors of one kind (``local``, ``ray``)."""

    @property
    def name(self) -> str: ...

    @property
    def summary(self) -> str: ...
