"""Shared output helpers for CLI commands (JSON to stdout, human text)."""

from __future__ import annotations

import json
import sys
from typing import Any

__all__ = ["print_json"]


def print_json(value: Any) -> None:
    """Pretty JSON on stdout (sorted keys), for ``--json`` flags."""
    json.dump(value, sys.stdout, indent=2, sort_keys=True, allow_nan=False)
    sys.stdout.write("\n")
