"""InvarLock core: is an edited checkpoint still as good as its baseline?

The core owns the plugin system (:mod:`invarlock_core.plugins`), the data contracts, paired
evaluation and reports, and scheduling. Importing it never imports torch or transformers.
"""

from __future__ import annotations

from invarlock_core.editing import Edit, EditParameter, EditSpec
from invarlock_core.errors import InvarlockError
from invarlock_core.guarding import (
    ForwardObserver,
    Guard,
    GuardContext,
    GuardResult,
    ModelUnderTest,
    ObservingGuard,
    ProbingGuard,
    Violation,
)
from invarlock_core.hookspecs import hookimpl
from invarlock_core.plugins import Registries, get_plugin_manager, get_registries

__version__ = "0.1.0"

__all__ = [
    "Edit",
    "EditParameter",
    "EditSpec",
    "ForwardObserver",
    "Guard",
    "GuardContext",
    "GuardResult",
    "InvarlockError",
    "ModelUnderTest",
    "ObservingGuard",
    "ProbingGuard",
    "Registries",
    "Violation",
    "__version__",
    "get_plugin_manager",
    "get_registries",
    "hookimpl",
]
