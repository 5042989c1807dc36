"""The built-in plugin of invarlock-edits (entry point ``invarlock_edits.builtin``).

Registers the four edits, the twelve error injections and the ``invarlock edit`` commands,
exactly as a third-party plugin would.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from invarlock_core.editing import Edit
from invarlock_core.hookspecs import hookimpl

__all__ = ["invarlock_register_commands", "invarlock_register_edits"]


@hookimpl
def invarlock_register_edits(register: Callable[[Edit], None]) -> None:
    """Register quant_rtn, fp8_quant, magnitude_prune, lowrank_svd and the error injections."""
    from invarlock_edits.builtin_edits import BUILTIN_EDITS
    from invarlock_edits.injections import INJECTIONS

    for edit in (*BUILTIN_EDITS, *INJECTIONS):
        register(edit)


@hookimpl
def invarlock_register_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``invarlock edit apply`` and ``invarlock edit list``."""
    from invarlock_edits.edit_command import register

    register(subparsers)
