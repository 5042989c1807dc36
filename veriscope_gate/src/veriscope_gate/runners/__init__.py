"""Built-in training runners launched by ``veriscope run`` (each is ``python -m`` runnable)."""

from __future__ import annotations

__all__: list[str] = []
