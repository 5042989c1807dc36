"""The built-in metrics, registered through the ``veriscope`` entry-point group like any plugin."""

from __future__ import annotations

from collections.abc import Callable

from veriscope_gate.hookspecs import hookimpl
from veriscope_gate.metrics import Metric, builtin_metrics

__all__ = ["veriscope_register_metrics"]


@hookimpl
def veriscope_register_metrics(register: Callable[[Metric], None]) -> None:
    """Register ``var_out_k``, ``eff_dim``, ``rankme`` and ``cos_disp`` (64-dim sketch)."""
    for metric in builtin_metrics(64):
        register(metric)
