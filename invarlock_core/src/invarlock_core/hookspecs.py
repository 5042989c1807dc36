"""Hook specifications of the ``invarlock`` plugin project.

Every hook uses the register-callback style: the host passes a ``register`` function and the
plugin calls it once per object it provides. Plugins are found through the ``invarlock``
entry-point group; built-in edits and guards are registered exactly like third-party ones.

A minimal plugin module::

    from invarlock_core import hookimpl

    @hookimpl
    def invarlock_register_edits(register):
        register(MyEdit())
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from invarlock_core.datasets.provider import DatasetProvider
    from invarlock_core.editing import Edit
    from invarlock_core.guarding import Guard
    from invarlock_core.scheduling.executor import ExecutorFactory

__all__ = [
    "PROJECT",
    "hookimpl",
    "hookspec",
    "invarlock_register_commands",
    "invarlock_register_datasets",
    "invarlock_register_edits",
    "invarlock_register_executors",
    "invarlock_register_guards",
]

PROJECT = "invarlock"
"""The pluggy project name and the entry-point group plugins declare themselves under."""

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def invarlock_register_edits(register: Callable[[Edit], None]) -> None:
    """Register edits and error injections: call ``register(edit)`` once per :class:`Edit`."""


@hookspec
def invarlock_register_guards(register: Callable[[Guard], None]) -> None:
    """Register guards: call ``register(guard)`` once per :class:`Guard`."""


@hookspec
def invarlock_register_datasets(register: Callable[[DatasetProvider], None]) -> None:
    """Register dataset providers: call ``register(provider)`` once per :class:`DatasetProvider`."""


@hookspec
def invarlock_register_executors(register: Callable[[ExecutorFactory], None]) -> None:
    """Register task executors for the scheduler: call ``register(factory)`` once per kind."""


@hookspec
def invarlock_register_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add sub-commands to the ``invarlock`` CLI.

    Call ``subparsers.add_parser(NAME, help=...)`` and give the new parser a handler with
    ``parser.set_defaults(handler=fn)``, where ``fn(args: argparse.Namespace) -> int`` returns the
    exit code and raises :class:`~invarlock_core.errors.InvarlockError` for expected failures.
    """
