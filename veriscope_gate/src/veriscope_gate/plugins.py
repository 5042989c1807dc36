"""The ``veriscope`` plugin manager factory and the metric registry it fills.

``get_plugin_manager()`` builds a fresh :class:`pluggy.PluginManager` for project ``veriscope``
from the ``veriscope`` entry-point group (the built-in metrics are the entry point
``veriscope_gate.metrics`` of this distribution), filtered by ``VERISCOPE_LOAD_PLUGINS`` (allow
list; set but empty loads none) and ``VERISCOPE_DISABLE_PLUGINS`` (block list). Nothing happens at
import time.
"""

from __future__ import annotations

import importlib.metadata
import os

import pluggy

from invarlock_core.errors import PluginError
from invarlock_core.registry import Registry
from veriscope_gate import hookspecs
from veriscope_gate.errors import MetricError
from veriscope_gate.metrics import Metric

__all__ = ["DISABLE_ENV", "LOAD_ENV", "get_metric_registry", "get_plugin_manager"]

LOAD_ENV = "VERISCOPE_LOAD_PLUGINS"
DISABLE_ENV = "VERISCOPE_DISABLE_PLUGINS"


def _env_list(name: str) -> set[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def get_plugin_manager(*, entry_points: bool = True) -> pluggy.PluginManager:
    """A fresh plugin manager holding every allowed entry-point plugin of group ``veriscope``."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    if entry_points:
        allow = _env_list(LOAD_ENV)
        block = _env_list(DISABLE_ENV) or set()
        eps = importlib.metadata.entry_points(group=hookspecs.PROJECT)
        for ep in sorted(eps, key=lambda e: e.name):
            if (allow is not None and ep.name not in allow) or ep.name in block:
                continue
            if pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                raise MetricError(
                    f"veriscope plugin {ep.name} ({ep.value}) failed to load: "
                    f"{type(exc).__name__}: {exc}; disable it with {DISABLE_ENV}={ep.name}"
                ) from exc
            pm.register(plugin, name=ep.name)
    pm.check_pending()
    return pm


def get_metric_registry(pm: pluggy.PluginManager | None = None) -> Registry[Metric]:
    """Every metric the plugins of ``pm`` (a fresh manager when omitted) register."""
    manager = pm if pm is not None else get_plugin_manager()
    registry: Registry[Metric] = Registry("metric")
    for impl in manager.hook.veriscope_register_metrics.get_hookimpls():

        def register(item: Metric, _plugin: str = impl.plugin_name) -> None:
            if not isinstance(item, Metric):
                raise MetricError(f"plugin {_plugin} registered {item!r}, which is not a Metric")
            lo, hi = item.calibration_range
            if not hi > lo:
                raise MetricError(f"metric {item.name!r} declares an empty calibration range")
            try:
                registry.add(item, plugin=_plugin)
            except PluginError as exc:
                raise MetricError(str(exc)) from None

        impl.function(register=register)
    return registry
