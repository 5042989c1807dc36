"""An example third-party InvarLock edit plugin (being implemented)."""

from __future__ import annotations
