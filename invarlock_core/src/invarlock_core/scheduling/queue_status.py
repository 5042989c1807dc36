"""Read-only questions to the queue: task and worker rows, events, counts and progress snapshots."""

from __future__ import annotations

import json
import time

from invarlock_core.atomic import atomic_write_json
from invarlock_core.scheduling.queue_database import QueueDatabase
from invarlock_core.scheduling.queue_records import (
    QueueProgress,
    TaskRecord,
    WorkerRecord,
)
from invarlock_core.scheduling.tasks import TaskState

__all__ = ["QueueStatus"]


class QueueStatus(QueueDatabase):
    """Status queries of :class:`~invarlock_core.scheduling.store.TaskQueue`; they never write,
    except :meth:`write_progress`, which writes the snapshot file."""

    def records(self) -> list[TaskRecord]:
        rows = self._conn.execute(
            "SELECT id, type, model, state, attempts, failures, devices, worker_id, failure_class, error,"
            " skipped, batch_size, seq_len, created_at, started_at, finished_at FROM tasks ORDER BY seq"
        ).fetchall()
        return [
            TaskRecord(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                tuple(json.loads(r[6] or "[]")),
                r[7],
                r[8],
                r[9],
                bool(r[10]),
                r[11],
                r[12],
                r[13],
                r[14],
                r[15],
            )
            for r in rows
        ]

    def workers(self) -> list[WorkerRecord]:
        rows = self._conn.execute(
            "SELECT id, device, pid, host, state, task_id, heartbeat_at, failures, completed FROM workers ORDER BY id"
        ).fetchall()
        return [WorkerRecord(*row) for row in rows]

    def events(
        self, kind: str | None = None
    ) -> list[tuple[int, float, str | None, str | None, str, str | None]]:
        query = "SELECT id, at, task_id, worker_id, kind, detail FROM events"
        if kind is not None:
            return list(self._conn.execute(query + " WHERE kind = ? ORDER BY id", (kind,)))
        return list(self._conn.execute(query + " ORDER BY id"))

    def state_counts(self) -> dict[str, int]:
        counts = {state.value: 0 for state in TaskState}
        counts.update(dict(self._conn.execute("SELECT state, COUNT(*) FROM tasks GROUP BY state")))
        return counts

    def unfinished(self) -> int:
        """How many tasks are pending, ready or running."""
        row = self._conn.execute(
            "SELECT COUNT(*) FROM tasks WHERE state IN ('pending', 'ready', 'running')"
        ).fetchone()
        return int(row[0])

    def has_unfinished(self) -> bool:
        """Cheaper than :meth:`unfinished` when only "anything left?" matters."""
        row = self._conn.execute(
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE state IN ('pending', 'ready', 'running'))"
        ).fetchone()
        return bool(row[0])

    def progress(self) -> QueueProgress:
        per_model: dict[str, dict[str, int]] = {}
        for model, state, count in self._conn.execute(
            "SELECT model, state, COUNT(*) FROM tasks GROUP BY model, state"
        ):
            per_model.setdefault(model, {})[state] = count
        counts = self.state_counts()
        return QueueProgress(
            time.time(),
            sum(counts.values()),
            counts,
            per_model,
            tuple(self.workers()),
            self.policy_name,
        )

    def write_progress(self) -> QueueProgress:
        """Write the ``state/progress.json`` snapshot atomically and return it."""
        snapshot = self.progress()
        atomic_write_json(self.output_dir / "state" / "progress.json", snapshot.to_json())
        return snapshot
