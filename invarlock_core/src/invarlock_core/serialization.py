"""The InvarLock cattrs converter: frozen attrs values to JSON-ready data and back.

One converter serves the whole product. Tuples become lists, ``Path`` becomes ``str`` and enums
their values; structuring reverses it. Structuring failures are aggregated by cattrs and surfaced as
one :class:`~invarlock_core.errors.SchemaError` line by :func:`structure`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import cattrs
from cattrs.errors import ClassValidationError

from invarlock_core.errors import SchemaError

__all__ = ["converter", "make_converter", "structure", "unstructure"]

T = TypeVar("T")


def make_converter() -> cattrs.Converter:
    """A fresh converter with InvarLock's hooks (use :data:`converter` unless you need your own)."""
    conv = cattrs.Converter(forbid_extra_keys=False)
    conv.register_unstructure_hook(Path, str)
    conv.register_structure_hook(Path, lambda value, _type: Path(value))
    return conv


converter = make_converter()
"""The product-wide converter."""


def unstructure(value: Any) -> Any:
    """attrs value -> JSON-ready dicts/lists/scalars."""
    return converter.unstructure(value)


def structure(
    data: Any,
    cls: type[T],
    *,
    conv: cattrs.Converter | None = None,
    error: Callable[[str], Exception] = SchemaError,
) -> T:
    """JSON-ready data -> ``cls``; raises ``error`` (default :class:`SchemaError`) with every
    problem on one line. Other products pass their own converter and exception class."""
    try:
        return (conv or converter).structure(data, cls)
    except ClassValidationError as exc:
        problems = "; ".join(cattrs.transform_error(exc))
        raise error(f"invalid {cls.__name__}: {problems}") from exc
    except (TypeError, ValueError, KeyError) as exc:
        raise error(f"invalid {cls.__name__}: {exc}") from exc
