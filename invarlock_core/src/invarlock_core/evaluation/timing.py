"""One small clock for the report's ``timings`` section.

:class:`Stopwatch` records named durations (``"dataset_s"``, ``("baseline", "load_s")``) measured
with :func:`time.perf_counter`. Guards that observe forward passes run inside scoring; their
observers report the seconds they spent, and :meth:`Lap.move` moves those seconds from the
scoring step to the guard step, so that scoring time is model time only.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import attrs

__all__ = ["Lap", "Stopwatch"]


@attrs.define
class Lap:
    """One measured step; ``shift`` seconds are added to (or, negative, taken from) it."""

    shift: float = 0.0

    def move(self, seconds: float) -> float:
        """Take ``seconds`` out of this step and return them, for another step to add."""
        self.shift -= seconds
        return seconds


@attrs.define
class Stopwatch:
    """Named durations; nested keys (``("subject", "eval_s")``) make nested sections."""

    values: dict[str, Any] = attrs.field(factory=dict)
    started: float = attrs.field(factory=time.perf_counter)

    def set(self, *key: str, value: Any) -> None:
        section = self.values
        for part in key[:-1]:
            section = section.setdefault(part, {})
        section[key[-1]] = value

    @contextlib.contextmanager
    def measure(self, *key: str) -> Iterator[Lap]:
        """Record the seconds the ``with`` block takes (plus the lap's shift) under ``key``."""
        lap = Lap()
        start = time.perf_counter()
        yield lap
        self.set(*key, value=time.perf_counter() - start + lap.shift)

    def since_start(self) -> float:
        return time.perf_counter() - self.started

    def copy(self) -> Stopwatch:
        """A stopwatch that starts from these values (nested sections copied) and this start."""
        values = {k: dict(v) if isinstance(v, dict) else v for k, v in self.values.items()}
        return Stopwatch(values=values, started=self.started)
