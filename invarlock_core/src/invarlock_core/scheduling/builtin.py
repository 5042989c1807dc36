"""Built-in executors, registered as a plugin by the plugin-manager factory."""

from __future__ import annotations

from collections.abc import Callable

from invarlock_core.hookspecs import hookimpl
from invarlock_core.scheduling.executor import ExecutorFactory


@hookimpl
def invarlock_register_executors(register: Callable[[ExecutorFactory], None]) -> None:
    """Register ``local`` and ``ray`` (``ray`` reports itself unavailable without its extra)."""
    from invarlock_core.scheduling.local import LocalExecutorFactory
    from invarlock_core.scheduling.ray_executor import RayExecutorFactory

    register(LocalExecutorFactory())
    register(RayExecutorFactory())
