"""The plugin loader both products use, the ``invarlock`` plugin manager factory and its registries.

A :class:`PluginGroup` says how a product finds its plugins: the pluggy project (also the
entry-point group), its hook specifications, the allow-list and block-list environment variables
and the error class its CLI prints. :func:`new_plugin_manager` builds a fresh manager for a group:
built-in modules first, then every entry point of the group that the allow list (set but empty
loads none) and the block list let through. A plugin that fails to import, or whose hook
implementations do not match the specifications (a misspelt hook name, an argument the hook does
not offer), is refused there with one line naming it. Hooks are called through pluggy
(:func:`call_each_plugin`), never by reaching into an implementation.

For ``invarlock``: ``INVARLOCK_LOAD_PLUGINS`` / ``INVARLOCK_DISABLE_PLUGINS``, errors are
:class:`~invarlock_core.errors.PluginError`. ``veriscope_gate.plugins`` declares its own group.
Nothing happens at import time; call the factory when you need plugins.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from invarlock_core import hookspecs
from invarlock_core.errors import OneLineError, PluginError
from invarlock_core.registry import Registry

if TYPE_CHECKING:
    from invarlock_core.datasets.provider import DatasetProvider
    from invarlock_core.editing import Edit
    from invarlock_core.guarding import Guard
    from invarlock_core.scheduling.executor import ExecutorFactory

__all__ = [
    "BUILTIN_PLUGINS",
    "INVARLOCK_PLUGINS",
    "InvarlockPluginManager",
    "PluginGroup",
    "PluginInfo",
    "ProductPluginManager",
    "Registries",
    "call_each_plugin",
    "get_plugin_manager",
    "get_registries",
    "new_plugin_manager",
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


@attrs.frozen
class PluginGroup:
    """How one product finds and names its plugins."""

    project: str
    """The pluggy project name, which is also the entry-point group."""
    hookspecs: ModuleType
    load_env: str
    """Allow list of entry-point names (comma-separated; set but empty loads none)."""
    disable_env: str
    """Block list of entry-point names."""
    error: type[OneLineError]
    """Raised, with one line, for a plugin that cannot be loaded."""
    label: str = "plugin"
    """How messages name a plugin of this group."""

    def refuse(self, name: str, why: str) -> OneLineError:
        """The error for plugin ``name``: ``why`` and how to switch the plugin off."""
        return self.error(f"{self.label} {name} {why}; disable it with {self.disable_env}={name}")


INVARLOCK_PLUGINS = PluginGroup(
    project=hookspecs.PROJECT,
    hookspecs=hookspecs,
    load_env=LOAD_ENV,
    disable_env=DISABLE_ENV,
    error=PluginError,
)


class ProductPluginManager(pluggy.PluginManager):
    """A :class:`pluggy.PluginManager` for one :class:`PluginGroup` that remembers each plugin's
    distribution and version and refuses plugins whose hooks do not match the specifications."""

    def __init__(self, group: PluginGroup) -> None:
        super().__init__(group.project)
        self.add_hookspecs(group.hookspecs)
        self.group = group
        self.distributions: dict[str, tuple[str, str]] = {}

    def register_module(self, module: object, name: str, distribution: str, version: str) -> None:
        """Register ``module`` as plugin ``name``; a hook that does not match its spec is refused."""
        try:
            self.register(module, name=name)
        except pluggy.PluginValidationError as exc:
            raise self.group.refuse(
                name, f"does not match its hook specifications ({_one_line(exc)})"
            ) from None
        self.distributions[name] = (distribution, version)

    def check_hooks(self) -> None:
        """Refuse a plugin that implements a hook its product does not specify."""
        try:
            self.check_pending()
        except pluggy.PluginValidationError as exc:
            name = self.get_name(exc.plugin) or repr(exc.plugin)
            raise self.group.refuse(
                name, f"implements a hook its product does not specify ({_one_line(exc)})"
            ) from None


class InvarlockPluginManager(ProductPluginManager):
    """The plugin manager of project ``invarlock``."""

    def __init__(self) -> None:
        super().__init__(INVARLOCK_PLUGINS)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


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


def new_plugin_manager(
    pm: ProductPluginManager, *, builtins: Sequence[str] = (), entry_points: bool = True
) -> ProductPluginManager:
    """Fill the fresh ``pm`` with its ``builtins`` modules and allowed entry points, then check it."""
    version = _core_version()
    for module_name in builtins:
        pm.register_module(
            importlib.import_module(module_name), module_name, "invarlock-core", version
        )
    if entry_points:
        _load_entry_points(pm)
    pm.check_hooks()
    return pm


def get_plugin_manager(*, entry_points: bool = True) -> InvarlockPluginManager:
    """Build a plugin manager with the built-ins and (unless disabled) entry-point plugins."""
    pm = InvarlockPluginManager()
    new_plugin_manager(pm, builtins=BUILTIN_PLUGINS, entry_points=entry_points)
    return pm


def _load_entry_points(pm: ProductPluginManager) -> None:
    group = pm.group
    allow = _env_list(group.load_env)
    block = _env_list(group.disable_env) or set()
    for ep in sorted(importlib.metadata.entry_points(group=group.project), key=lambda e: e.name):
        if allow is not None and ep.name not in allow:
            continue
        if ep.name in block or pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            raise group.refuse(
                ep.name, f"({ep.value}) failed to load: {type(exc).__name__}: {exc}"
            ) from exc
        dist = ep.dist
        pm.register_module(
            plugin,
            ep.name,
            dist.metadata["Name"] if dist is not None else "unknown",
            dist.version if dist is not None else "unknown",
        )


def call_each_plugin(
    pm: pluggy.PluginManager, hook_name: str, kwargs_for: Callable[[str], Mapping[str, Any]]
) -> None:
    """Call hook ``hook_name`` once per implementing plugin, through pluggy, with the keyword
    arguments ``kwargs_for(plugin_name)`` gives (a registrar that knows who registers)."""
    impls = getattr(pm.hook, hook_name).get_hookimpls()
    plugins = {impl.plugin_name: impl.plugin for impl in impls}
    for impl in impls:
        others = [plugin for name, plugin in plugins.items() if name != impl.plugin_name]
        pm.subset_hook_caller(hook_name, remove_plugins=others)(**kwargs_for(impl.plugin_name))


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
            call_each_plugin(pm, hook_name, _registrar_kwargs(registry))
        return registries


def _registrar_kwargs(registry: Registry[Any]) -> Callable[[str], Mapping[str, Any]]:
    return lambda plugin: {"register": _registrar(registry, plugin)}


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


def plugin_infos(pm: ProductPluginManager, registries: Registries) -> list[PluginInfo]:
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
