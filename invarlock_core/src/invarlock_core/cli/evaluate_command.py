"""``invarlock evaluate`` (being implemented)."""

from __future__ import annotations

import argparse
from typing import Any

from invarlock_core.errors import UsageError

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("evaluate", help="(not yet available)")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    raise UsageError("invarlock evaluate is not available yet")
