"""Task graphs, the GPU-aware scheduler, the durable SQLite queue and executors."""

from __future__ import annotations

__all__: list[str] = []
