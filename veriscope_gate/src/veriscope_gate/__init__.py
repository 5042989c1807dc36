"""Veriscope: a training reliability gate (finite-window divergence D_W) with a Trainer callback.

``import veriscope_gate`` needs neither torch nor transformers: validate/report/diff/calibrate and
the gate engine are pure Python + numpy. :class:`VeriscopeCallback` (transformers) and the
activation probe (torch) are imported lazily on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from veriscope_gate.controls import GateControls, load_preset, preset_names
from veriscope_gate.engine import GateEngine
from veriscope_gate.errors import VeriscopeError
from veriscope_gate.hookspecs import hookimpl
from veriscope_gate.metrics import Metric, Sketch
from veriscope_gate.records import Audit, GateRecord
from veriscope_gate.session import GateSession
from veriscope_gate.version import __version__

if TYPE_CHECKING:
    from veriscope_gate.callback import VeriscopeCallback

__all__ = [
    "Audit",
    "GateControls",
    "GateEngine",
    "GateRecord",
    "GateSession",
    "Metric",
    "Sketch",
    "VeriscopeCallback",
    "VeriscopeError",
    "__version__",
    "hookimpl",
    "load_preset",
    "preset_names",
]


def __getattr__(name: str) -> Any:
    if name == "VeriscopeCallback":
        from veriscope_gate.callback import VeriscopeCallback

        return VeriscopeCallback
    raise AttributeError(f"module 'veriscope_gate' has no attribute {name!r}")
