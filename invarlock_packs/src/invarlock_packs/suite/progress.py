"""Progress a person can watch while a suite runs.

A background thread reads the run's queue (``state/queue.sqlite3``, read-only queries) about once a
second. On a terminal it keeps a tqdm bar: tasks done / total, with failures, the running task of
each device and the counts by task type in its description. When output is not a terminal (CI, a
log file) it prints one plain line per finished task instead.
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from pathlib import Path
from typing import IO, Any, Final

__all__ = ["ProgressWatcher"]

_FINISHED: Final = frozenset({"completed", "failed"})


class ProgressWatcher:
    """``start()`` it once the queue directory exists; ``stop()`` prints the last state."""

    def __init__(self, out: Path, *, stream: IO[str] | None = None, interval: float = 1.0) -> None:
        self.out = out
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.live = self.stream.isatty()
        self._stop = threading.Event()
        self._seen: set[str] = set()
        self._bar: Any = None
        self._thread = threading.Thread(target=self._loop, name="suite-progress", daemon=True)

    def start(self) -> ProgressWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()
        if self._bar is not None:
            self._bar.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self) -> None:
        """Read the queue once and update the view (a missing or busy queue is skipped)."""
        from invarlock_core.scheduling import TaskQueue

        if not TaskQueue.exists(self.out):
            return
        try:
            with TaskQueue(self.out) as queue:
                records = queue.records()
        except Exception:  # a queue being created or locked right now: try again next tick
            return
        if self.live:
            self._update_bar(records)
        else:
            self._print_finished(records)

    def _print_finished(self, records: list[Any]) -> None:
        total = len(records)
        done = sum(1 for r in records if r.state in _FINISHED)
        for record in records:
            if record.state in _FINISHED and record.id not in self._seen:
                self._seen.add(record.id)
                seconds = (record.finished_at or 0.0) - (
                    record.started_at or record.finished_at or 0.0
                )
                note = " (skipped: outputs exist)" if record.skipped else ""
                error = f": {record.error}" if record.state == "failed" and record.error else ""
                print(
                    f"[{done}/{total}] {record.state} {record.id} {seconds:.1f}s{note}{error}",
                    file=self.stream,
                    flush=True,
                )

    def _update_bar(self, records: list[Any]) -> None:
        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(total=len(records), unit="task", file=self.stream, dynamic_ncols=True)
        done = sum(1 for r in records if r.state in _FINISHED)
        failed = sum(1 for r in records if r.state == "failed")
        running = [f"{','.join(r.devices)}:{r.id}" for r in records if r.state == "running"]
        by_type = Counter(r.type for r in records if r.state not in _FINISHED)
        self._bar.total = len(records)
        self._bar.n = done
        left = " ".join(f"{kind}={count}" for kind, count in sorted(by_type.items()))
        self._bar.set_postfix_str(f"failed={failed} left: {left} | {' '.join(running)}"[:200])
        self._bar.refresh()
