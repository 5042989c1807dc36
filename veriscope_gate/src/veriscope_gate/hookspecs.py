"""Hook specifications of the ``veriscope`` plugin project (entry-point group ``veriscope``).

A metric plugin module::

    from veriscope_gate import hookimpl

    @hookimpl
    def veriscope_register_metrics(register):
        register(MyMetric())

where ``MyMetric`` satisfies :class:`veriscope_gate.metrics.Metric`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from veriscope_gate.metrics import Metric

__all__ = ["PROJECT", "hookimpl", "hookspec", "veriscope_register_metrics"]

PROJECT = "veriscope"
"""The pluggy project name and the entry-point group that plugins declare themselves under."""

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def veriscope_register_metrics(register: Callable[[Metric], None]) -> None:
    """Register representation metrics: call ``register(metric)`` once per :class:`Metric`."""
