"""The built-in guards and ``invarlock calibrate``, registered as an ordinary ``invarlock`` plugin."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from invarlock_core.guarding import Guard
from invarlock_core.hookspecs import hookimpl

__all__ = ["builtin_guards", "invarlock_register_commands", "invarlock_register_guards"]


def builtin_guards() -> list[Guard]:
    """Fresh instances of the four built-in guards, in canonical order."""
    from invarlock_guards.invariants import InvariantsGuard
    from invarlock_guards.rmt import RMTGuard
    from invarlock_guards.spectral import SpectralGuard
    from invarlock_guards.variance import VarianceGuard

    return [InvariantsGuard(), SpectralGuard(), RMTGuard(), VarianceGuard()]


@hookimpl
def invarlock_register_guards(register: Callable[[Guard], None]) -> None:
    """Register ``invariants``, ``spectral``, ``rmt`` and ``variance``."""
    for guard in builtin_guards():
        register(guard)


@hookimpl
def invarlock_register_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``invarlock calibrate``."""
    from invarlock_guards.calibrate_command import register

    register(subparsers)
