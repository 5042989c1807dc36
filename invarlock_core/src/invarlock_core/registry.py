"""Named registries that plugins fill through the register-callback hooks.

The core owns one :class:`Registry` per kind (edits, guards, datasets, executors). Each entry
remembers which plugin registered it, for ``invarlock plugins list``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar

import attrs

from invarlock_core.errors import PluginError

__all__ = ["Named", "Registration", "Registry"]


class Named(Protocol):
    """Anything registered has a unique ``name`` and a one-line ``summary``."""

    @property
    def name(self) -> str: ...

    @property
    def summary(self) -> str: ...


T = TypeVar("T", bound=Named)


@attrs.frozen
class Registration(Generic[T]):
    """One registered object and the plugin that registered it."""

    item: T
    plugin: str


class Registry(Generic[T]):
    """A name -> object map that refuses duplicates and explains unknown names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Registration[T]] = {}

    def add(self, item: T, *, plugin: str) -> None:
        """Register ``item`` under ``item.name``; a second registration of a name is an error."""
        name = item.name
        if not name or not isinstance(name, str):
            raise PluginError(f"plugin {plugin} registered a {self.kind} without a name")
        if name in self._entries:
            first = self._entries[name].plugin
            raise PluginError(
                f"{self.kind} {name!r} is registered twice (by {first} and by {plugin}); "
                "disable one with INVARLOCK_DISABLE_PLUGINS"
            )
        self._entries[name] = Registration(item, plugin)

    def get(self, name: str) -> T:
        """The object named ``name``; an unknown name lists the valid ones."""
        try:
            return self._entries[name].item
        except KeyError:
            valid = ", ".join(sorted(self._entries)) or "none registered"
            raise PluginError(f"unknown {self.kind} {name!r}; valid: {valid}") from None

    def registration(self, name: str) -> Registration[T]:
        self.get(name)
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Registration[T]]:
        return iter(sorted(self._entries.values(), key=lambda r: r.item.name))

    def __len__(self) -> int:
        return len(self._entries)
