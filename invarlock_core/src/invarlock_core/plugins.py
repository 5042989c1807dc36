"""The plugin manager factory and the registries it fills.

``get_plugin_manager()`` builds a fresh :class:`pluggy.PluginManager` for project ``invarlock``:
the core's own built-ins first, then every entry point of the ``invarlock`` group, filtered by

* ``INVARLOCK_LOAD_PLUGINS``: comma-separated allow list of entry-point names (set but empty
  loads none), and
* ``INVARLOCK_DISABLE_PLUGINS``: comma-separated block list.

Nothing happens at import time; call the factory when you need plugins.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from invarlock_core import hookspecs
from invarlock_core.errors import PluginError
from invarlock_core.registry import Registry

if TYPE_CHECKING:
    from invarlock_core.datasets.provider import DatasetProvider
    from invarlock_core.editing import Edit
    from invarlock_core.guarding import Guard
    from invarlock_core.scheduling.executor import ExecutorFactory

__all__ = [
    "BUILTIN_PLUGINS",
    "InvarlockPluginManager",
    "PluginInfo",
    "Registries",
    "get_plugin_manager",
    "get_registries",
    "plugin_infos",
]

BUILTIN_PLUGINS = (
    "invarlock_core.datasets.builtin",
    "invarlock_core.scheduling.builtin",
    "invarlock_core.commands",
)
"""Modules of invarlock-core that are registered as plugins by the factory itself."""

LOAD_ENV = "INVARLOCK_LOAD_PLUGINS"
DISABLE_ENV = "INVARLOCK_DISABLE_PLUGINS"


class InvarlockPluginManager(pluggy.PluginManager):
    """A :class:`pluggy.PluginManager` that remembers each plugin's distribution and version."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.distributions: dict[str, tuple[str, str]] = {}

    def register_module(self, module: object, name: str, distribution: str, version: str) -> None:
        self.register(module, name=name)
        self.distributions[name] = (distribution, version)


def _env_list(name: str) -> set[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _core_version() -> str:
    try:
        return importlib.metadata.version("invarlock-core")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source checkout
        return "0+unknown"


def get_plugin_manager(*, entry_points: bool = True) -> InvarlockPluginManager:
    """Build a plugin manager with the built-ins and (unless disabled) entry-point plugins."""
    import importlib

    pm = InvarlockPluginManager()
    version = _core_version()
    for module_name in BUILTIN_PLUGINS:
        pm.register_module(importlib.import_module(module_name), module_name, "invarlock-core", version)
    if entry_points:
        _load_entry_points(pm)
    pm.check_pending()
    return pm


def _load_entry_points(pm: InvarlockPluginManager) -> None:
    allow = _env_list(LOAD_ENV)
    block = _env_list(DISABLE_ENV) or set()
    for ep in sorted(importlib.metadata.entry_points(group=hookspecs.PROJECT), key=lambda e: e.name):
        if allow is not None and ep.name not in allow:
            continue
        if ep.name in block or pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginError(
                f"plugin {ep.name} ({ep.value}) failed to load: {type(exc).__name__}: {exc}; "
                f"disable it with {DISABLE_ENV}={ep.name}"
            ) from exc
        dist = ep.dist
        pm.register_module(
            plugin,
            ep.name,
            dist.metadata["Name"] if dist is not None else "unknown",
            dist.version if dist is not None else "unknown",
        )


@attrs.define
class Registries:
    """Everything the plugins registered, by kind."""

    edits: Registry[Edit] = attrs.field(factory=lambda: Registry("edit"))
    guards: Registry[Guard] = attrs.field(factory=lambda: Registry("guard"))
    datasets: Registry[DatasetProvider] = attrs.field(factory=lambda: Registry("dataset"))
    executors: Registry[ExecutorFactory] = attrs.field(factory=lambda: Registry("executor"))

    @classmethod
    def from_plugin_manager(cls, pm: pluggy.PluginManager) -> Registries:
        registries = cls()
        hooks: Iterable[tuple[str, Registry[Any]]] = (
            ("invarlock_register_edits", registries.edits),
            ("invarlock_register_guards", registries.guards),
            ("invarlock_register_datasets", registries.datasets),
            ("invarlock_register_executors", registries.executors),
        )
        for hook_name, registry in hooks:
            for impl in getattr(pm.hook, hook_name).get_hookimpls():
                impl.function(register=_registrar(registry, impl.plugin_name))
        return registries


def _registrar(registry: Registry[Any], plugin: str) -> Callable[[Any], None]:
    def register(item: Any) -> None:
        registry.add(item, plugin=plugin)

    return register


def get_registries(pm: pluggy.PluginManager | None = None) -> Registries:
    """Collect the registries from ``pm`` (a fresh :func:`get_plugin_manager` when omitted)."""
    return Registries.from_plugin_manager(pm if pm is not None else get_plugin_manager())


@attrs.frozen
class PluginInfo:
    """One loaded plugin, for ``invarlock plugins list``."""

    name: str
    distribution: str
    version: str
    builtin: bool
    hooks: tuple[str, ...]
    registers: dict[str, list[str]]


def plugin_infos(pm: InvarlockPluginManager, registries: Registries) -> list[PluginInfo]:
    """Describe every plugin ``pm`` holds and what it registered."""
    by_plugin: dict[str, dict[str, list[str]]] = {}
    for kind, registry in (
        ("edits", registries.edits),
        ("guards", registries.guards),
        ("datasets", registries.datasets),
        ("executors", registries.executors),
    ):
        for reg in registry:
            by_plugin.setdefault(reg.plugin, {}).setdefault(kind, []).append(reg.item.name)
    infos = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda pair: pair[0]):
        dist, version = pm.distributions.get(name, ("unknown", "unknown"))
        hooks = tuple(sorted(caller.name for caller in pm.get_hookcallers(plugin) or []))
        infos.append(
            PluginInfo(
                name=name,
                distribution=dist,
                version=version,
                builtin=name in BUILTIN_PLUGINS,
                hooks=hooks,
                registers=by_plugin.get(name, {}),
            )
        )
    return infos
