"""Range checks of merged guard settings: one-line :class:`ConfigError` on a bad value."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from invarlock_core.errors import ConfigError

__all__ = ["check_choice", "check_families", "check_range"]


def check_range(table: Mapping[str, Any], key: str, low: float, high: float, *, where: str) -> None:
    """``table[key]`` must be a finite number in ``[low, high]``."""
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"option {where}.{key} must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"option {where}.{key} = {value!r} is outside [{low:g}, {high:g}]")


def check_families(
    table: Mapping[str, Any], families: Iterable[str], low: float, high: float, *, where: str
) -> None:
    """Every family in ``families`` must be present in ``table`` with a value in range."""
    for family in families:
        if family not in table:
            raise ConfigError(f"option {where} has no value for family {family!r}")
        check_range(table, family, low, high, where=where)


def check_choice(table: Mapping[str, Any], key: str, choices: Iterable[str], *, where: str) -> None:
    """``table[key]`` must be one of ``choices``."""
    allowed = list(choices)
    if table[key] not in allowed:
        raise ConfigError(f"option {where}.{key} = {table[key]!r}; valid: {', '.join(allowed)}")
