"""The plugin module InvarLock loads (entry point ``invarlock_plugin_example.edits``)."""

from __future__ import annotations

from collections.abc import Callable

from invarlock_core import hookimpl
from invarlock_core.editing import Edit

__all__ = ["invarlock_register_edits"]


@hookimpl
def invarlock_register_edits(register: Callable[[Edit], None]) -> None:
    """Register ``gaussian_noise``."""
    from invarlock_plugin_example.noise import GAUSSIAN_NOISE

    register(GAUSSIAN_NOISE)
