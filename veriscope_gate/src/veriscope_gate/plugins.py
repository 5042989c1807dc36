"""The ``veriscope`` plugin manager factory and the metric registry it fills.

``get_plugin_manager()`` builds a fresh plugin manager for project ``veriscope`` with the loader of
:mod:`invarlock_core.plugins`: every entry point of the ``veriscope`` group (the built-in metrics
are the entry point ``veriscope_gate.metrics`` of this distribution), filtered by
``VERISCOPE_LOAD_PLUGINS`` (allow list; set but empty loads none) and ``VERISCOPE_DISABLE_PLUGINS``
(block list). A plugin that fails to load or whose hooks do not match the specifications is refused
with a one-line :class:`~veriscope_gate.errors.MetricError`. Nothing happens at import time.
"""

from __future__ import annotations

import pluggy

from invarlock_core.errors import PluginError
from invarlock_core.plugins import (
    PluginGroup,
    ProductPluginManager,
    call_each_plugin,
    new_plugin_manager,
)
from invarlock_core.registry import Registry
from veriscope_gate import hookspecs
from veriscope_gate.errors import MetricError
from veriscope_gate.metrics import Metric

__all__ = [
    "DISABLE_ENV",
    "LOAD_ENV",
    "VERISCOPE_PLUGINS",
    "get_metric_registry",
    "get_plugin_manager",
]

LOAD_ENV = "VERISCOPE_LOAD_PLUGINS"
DISABLE_ENV = "VERISCOPE_DISABLE_PLUGINS"

VERISCOPE_PLUGINS = PluginGroup(
    project=hookspecs.PROJECT,
    hookspecs=hookspecs,
    load_env=LOAD_ENV,
    disable_env=DISABLE_ENV,
    error=MetricError,
    label="veriscope plugin",
)


def get_plugin_manager(*, entry_points: bool = True) -> ProductPluginManager:
    """A fresh plugin manager holding every allowed entry-point plugin of group ``veriscope``."""
    return new_plugin_manager(ProductPluginManager(VERISCOPE_PLUGINS), entry_points=entry_points)


def _registrar(registry: Registry[Metric], plugin: str) -> dict[str, object]:
    def register(item: Metric) -> None:
        if not isinstance(item, Metric):
            raise MetricError(f"plugin {plugin} registered {item!r}, which is not a Metric")
        lo, hi = item.calibration_range
        if not hi > lo:
            raise MetricError(f"metric {item.name!r} declares an empty calibration range")
        try:
            registry.add(item, plugin=plugin)
        except PluginError as exc:
            raise MetricError(str(exc)) from None

    return {"register": register}


def get_metric_registry(pm: pluggy.PluginManager | None = None) -> Registry[Metric]:
    """Every metric the plugins of ``pm`` (a fresh manager when omitted) register."""
    manager = pm if pm is not None else get_plugin_manager()
    registry: Registry[Metric] = Registry("metric")
    call_each_plugin(
        manager, "veriscope_register_metrics", lambda plugin: _registrar(registry, plugin)
    )
    return registry
