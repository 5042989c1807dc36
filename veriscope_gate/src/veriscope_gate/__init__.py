"""Veriscope: a training reliability gate (D_W divergence) with a Trainer callback."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
