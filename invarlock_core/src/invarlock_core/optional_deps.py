"""Lazy imports of heavy optional dependencies, with actionable messages when they are missing.

``import invarlock_core`` never imports torch, transformers, datasets or ray; the functions that
need them call these helpers.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from invarlock_core.errors import DependencyError

__all__ = ["require"]

_HINTS = {
    "torch": "pip install 'invarlock-core[hf]' (CPU: pip install torch==2.13.0)",
    "transformers": "pip install 'invarlock-core[hf]'",
    "safetensors": "pip install 'invarlock-core[hf]'",
    "datasets": "pip install datasets",
    "ray": "pip install 'invarlock-core[ray]'",
    "tqdm": "pip install tqdm",
}


def require(module: str, *, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`DependencyError` saying what needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        root = module.split(".")[0]
        hint = _HINTS.get(root, f"pip install {root}")
        raise DependencyError(f"{purpose} needs {root}, which is not installed: {hint}") from exc
