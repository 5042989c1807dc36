"""Guard tiers shipped as TOML data, and the merge of preset options over a tier.

A tier (``balanced``, ``conservative``, ``aggressive``) is a TOML file in
``invarlock_guards/tiers/`` with one table per guard. A guard reads ``context.tier``, takes that
tier's table for itself and merges ``context.options`` (a preset's ``guards.<name>`` table) over
it: nested tables merge key by key, everything else replaces. Unknown keys and values of the wrong
type are configuration errors, so a typo in a preset never silently falls back to a default.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import tomllib
from collections.abc import Mapping
from typing import Any

from invarlock_core.errors import ConfigError

__all__ = [
    "DEFAULT_TIER",
    "TIERS",
    "TIER_ENV",
    "default_tier",
    "guard_settings",
    "load_tier",
    "merge_options",
]

TIERS: tuple[str, ...] = ("balanced", "conservative", "aggressive")
DEFAULT_TIER = "balanced"
TIER_ENV = "INVARLOCK_TIER"
"""Environment variable naming the default tier (overridden by ``--tier`` flags)."""


def default_tier() -> str:
    """``$INVARLOCK_TIER`` when set (validated), else ``balanced``."""
    tier = os.environ.get(TIER_ENV, "").strip() or DEFAULT_TIER
    _check_tier(tier)
    return tier


def _check_tier(tier: str) -> None:
    if tier not in TIERS:
        raise ConfigError(f"unknown tier {tier!r}; valid: {', '.join(TIERS)}")


@functools.cache
def _load(tier: str) -> dict[str, Any]:
    resource = importlib.resources.files("invarlock_guards") / "tiers" / f"{tier}.toml"
    return tomllib.loads(resource.read_text(encoding="utf-8"))


def load_tier(tier: str) -> dict[str, Any]:
    """The whole tier table (a fresh copy: callers may change it)."""
    _check_tier(tier)
    table: dict[str, Any] = _deep_copy(_load(tier))
    return table


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _deep_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_deep_copy(item) for item in value]
    return value


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, Mapping):
        return "table"
    return type(value).__name__


def merge_options(
    base: Mapping[str, Any], options: Mapping[str, Any], *, where: str
) -> dict[str, Any]:
    """``options`` merged over ``base``; unknown keys and type changes raise :class:`ConfigError`."""
    merged: dict[str, Any] = _deep_copy(base)
    for key, value in options.items():
        path = f"{where}.{key}"
        if key not in base:
            valid = ", ".join(sorted(base))
            raise ConfigError(f"unknown option {path}; valid: {valid}")
        expected, got = _type_name(base[key]), _type_name(value)
        if expected != got:
            raise ConfigError(f"option {path} must be a {expected}, got {got} {value!r}")
        if isinstance(value, Mapping):
            merged[key] = merge_options(base[key], value, where=path)
        elif isinstance(base[key], float) and isinstance(value, int):
            merged[key] = float(value)
        elif isinstance(base[key], int) and isinstance(value, float):
            if not value.is_integer():
                raise ConfigError(f"option {path} must be an integer, got {value!r}")
            merged[key] = int(value)
        else:
            merged[key] = _deep_copy(value)
    return merged


def guard_settings(guard: str, tier: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Tier ``tier``'s table for ``guard`` with ``options`` merged over it."""
    _check_tier(tier)
    table = _load(tier).get(guard)  # merge_options copies it: the cached table is never changed
    if not isinstance(table, dict):
        raise ConfigError(f"tier {tier!r} has no settings for guard {guard!r}")
    return merge_options(table, options, where=f"guards.{guard}")
