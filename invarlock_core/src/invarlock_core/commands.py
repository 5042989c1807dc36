"""The core's own CLI commands, registered as a plugin by the plugin-manager factory."""

from __future__ import annotations

import argparse
from typing import Any

from invarlock_core.cli import evaluate_command, plugins_command, schedule_command, verify_command
from invarlock_core.hookspecs import hookimpl


@hookimpl
def invarlock_register_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``evaluate``, ``verify``, ``plugins`` and ``schedule``."""
    evaluate_command.register(subparsers)
    verify_command.register(subparsers)
    plugins_command.register(subparsers)
    schedule_command.register(subparsers)
