"""Claims and leases: workers, heartbeats, claiming a ready task with its devices, completing or
failing it, and reclaiming the work of dead workers. Every change is one transaction under the
scheduler lock."""

from __future__ import annotations

import fcntl
import heapq
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import attrs

from invarlock_core.errors import UsageError
from invarlock_core.scheduling.failures import FailureClass, RetryDecision
from invarlock_core.scheduling.memory import MemoryPlanner, ModelProfile
from invarlock_core.scheduling.policy import (
    Candidate,
    Choice,
    DeviceSlot,
    ModelProgress,
    SchedulerView,
    choose,
)
from invarlock_core.scheduling.queue_database import QueueDatabase, _plain_transaction
from invarlock_core.scheduling.queue_records import (
    Claim,
)
from invarlock_core.scheduling.tasks import Task, TaskType
from invarlock_core.serialization import structure, unstructure

__all__ = ["QueueClaims"]

def _host() -> str:
    return os.uname().nodename if hasattr(os, "uname") else "localhost"


class QueueClaims(QueueDatabase):
    """The claim-and-lease side of :class:`~invarlock_core.scheduling.store.TaskQueue`."""

    # -- workers ------------------------------------------------------------------------------

    def register_worker(self, worker_id: str, device: str, pid: int | None) -> None:
        now = time.time()
        with self._transaction(self._conn) as conn:
            conn.execute(
                "INSERT INTO workers (id, device, pid, host, state, started_at, heartbeat_at) VALUES (?,?,?,?,?,?,?)"
                " ON CONFLICT(id) DO UPDATE SET pid=excluded.pid, host=excluded.host, state=excluded.state,"
                " heartbeat_at=excluded.heartbeat_at, task_id=NULL",
                (worker_id, device, pid, _host(), "idle", now, now),
            )

    def heartbeat(
        self,
        worker_id: str,
        *,
        state: str,
        task_id: str | None = None,
        free_gb: float | None = None,
    ) -> None:
        """Record that a worker is alive; renew the reservations of the task it runs."""
        now = time.time()
        with self._transaction(self._conn) as conn:
            conn.execute(
                "UPDATE workers SET heartbeat_at=?, state=?, task_id=? WHERE id=?",
                (now, state, task_id, worker_id),
            )
            if task_id is not None:
                conn.execute(
                    "UPDATE tasks SET heartbeat_at=? WHERE id=? AND worker_id=?",
                    (now, task_id, worker_id),
                )
                conn.execute(
                    "UPDATE reservations SET expires_at=? WHERE task_id=? AND worker_id=?",
                    (now + self.knobs.gpu_reservation_ttl, task_id, worker_id),
                )
            if free_gb is not None:
                conn.execute(
                    "UPDATE devices SET free_gb=?, updated_at=? WHERE id=(SELECT device FROM workers WHERE id=?)",
                    (free_gb, now, worker_id),
                )

    def set_worker_state(self, worker_id: str, state: str) -> None:
        with self._transaction(self._conn) as conn:
            conn.execute("UPDATE workers SET state=?, task_id=NULL WHERE id=?", (state, worker_id))

    # -- claiming -----------------------------------------------------------------------------

    def _view(self, conn: sqlite3.Connection, now: float) -> SchedulerView:
        running = dict(
            conn.execute("SELECT model, COUNT(*) FROM tasks WHERE state='running' GROUP BY model")
        )
        progress = {
            name: ModelProgress(total, remaining)
            for name, total, remaining in conn.execute(
                "SELECT name, total_seconds, remaining_seconds FROM models"
            )
        }
        oldest = conn.execute("SELECT MIN(ready_at) FROM tasks WHERE state='ready'").fetchone()[0]
        return SchedulerView.build(now, running, progress, oldest)

    def _candidates(
        self, conn: sqlite3.Connection, now: float, pruned: set[str]
    ) -> Iterator[Candidate]:
        """Ready candidates in (static priority desc, seq) order: a merge of one stream per model,
        so that a model :func:`choose` prunes is no longer read."""
        models = [row[0] for row in conn.execute("SELECT name FROM models")]
        heap: list[tuple[float, int, int, tuple[Any, ...], sqlite3.Cursor]] = []
        for index, model in enumerate(models):
            stream = conn.execute(
                "SELECT id, type, model, memory_gb, required_gpus, static_priority, seq, ready_at"
                " FROM tasks WHERE state='ready' AND model=? AND not_before <= ?"
                " ORDER BY static_priority DESC, seq",
                (model, now),
            )
            first = stream.fetchone()
            if first is not None:
                heap.append((-first[5], first[6], index, first, stream))
        heapq.heapify(heap)
        while heap:
            _, _, index, row, cursor = heap[0]
            if row[2] in pruned:
                heapq.heappop(heap)
                continue
            following = cursor.fetchone()
            if following is None:
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, (-following[5], following[6], index, following, cursor))
            yield Candidate(
                row[0], TaskType(row[1]), row[2], row[3], row[4], row[5], row[6], row[7] or now
            )

    def claim(self, worker_id: str, device_id: str, free_gb: float | None = None) -> Claim | None:
        """Atomically take the best task that fits ``device_id`` (plus other free devices).

        Returns ``None`` when the device is reserved, nothing is ready, nothing fits, or the
        scheduler lock was not free within ``GPU_RESERVATION_LOCK_TIMEOUT`` (the worker retries).
        """
        if not self._try_lock(self.knobs.gpu_reservation_lock_timeout):
            return None
        try:
            with _plain_transaction(self._conn) as conn:
                now = time.time()
                choice = self._choose_locked(conn, worker_id, device_id, free_gb, now)
                return (
                    self._take_locked(conn, worker_id, choice, now) if choice is not None else None
                )
        finally:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)

    def _choose_locked(
        self,
        conn: sqlite3.Connection,
        worker_id: str,
        device_id: str,
        free_gb: float | None,
        now: float,
    ) -> Choice | None:
        expired = conn.execute(
            "SELECT device, task_id FROM reservations WHERE expires_at < ?", (now,)
        ).fetchall()
        if expired:
            conn.execute("DELETE FROM reservations WHERE expires_at < ?", (now,))
            for device, task_id in expired:
                self._event(conn, now, task_id, None, "reservation_expired", device)
        reserved = {row[0] for row in conn.execute("SELECT device FROM reservations")}
        if device_id in reserved:
            return None
        fraction = self.knobs.cuda_memory_fraction
        slots = {
            row[0]: min(row[1] * fraction, row[2])
            for row in conn.execute("SELECT id, total_gb, free_gb FROM devices")
        }
        if device_id not in slots:
            raise UsageError(f"worker {worker_id} names unknown device {device_id!r}")
        own = DeviceSlot(device_id, slots[device_id] if free_gb is None else free_gb)
        busy_workers = {
            row[0]
            for row in conn.execute(
                "SELECT device FROM workers WHERE state='busy' AND id != ?", (worker_id,)
            )
        }
        free = [
            DeviceSlot(ident, gb)
            for ident, gb in slots.items()
            if ident != device_id and ident not in reserved and ident not in busy_workers
        ]
        pruned: set[str] = set()
        return choose(
            self._candidates(conn, now, pruned),
            own,
            free,
            self._view(conn, now),
            self._policy,
            prune=pruned.add,
        )

    def _take_locked(
        self, conn: sqlite3.Connection, worker_id: str, choice: Choice, now: float
    ) -> Claim:
        changed = conn.execute(
            "UPDATE tasks SET state='running', worker_id=?, devices=?, attempts=attempts+1, started_at=?,"
            " heartbeat_at=?, pid=NULL WHERE id=? AND state='ready'",
            (worker_id, json.dumps(list(choice.devices)), now, now, choice.task_id),
        ).rowcount
        if changed != 1:  # pragma: no cover - impossible under the write lock
            raise RuntimeError(f"task {choice.task_id} changed state during a locked claim")
        expires = now + self.knobs.gpu_reservation_ttl
        conn.executemany(
            "INSERT INTO reservations (device, task_id, worker_id, expires_at) VALUES (?,?,?,?)",
            [(device, choice.task_id, worker_id, expires) for device in choice.devices],
        )
        conn.execute(
            "UPDATE workers SET state='busy', task_id=?, heartbeat_at=? WHERE id=?",
            (choice.task_id, now, worker_id),
        )
        row = conn.execute(
            "SELECT spec, attempts, failures, batch_size, seq_len FROM tasks WHERE id=?",
            (choice.task_id,),
        ).fetchone()
        self._event(
            conn,
            now,
            choice.task_id,
            worker_id,
            "claim",
            json.dumps({"devices": list(choice.devices), "score": choice.score}),
        )
        task = structure(json.loads(row[0]), Task)
        task = attrs.evolve(task, batch_size=row[3], seq_len=row[4])
        by_id = {device.id: device for device in self.devices}
        return Claim(task, tuple(by_id[d] for d in choice.devices), row[1], row[2], choice.score)

    @staticmethod
    def _event(
        conn: sqlite3.Connection,
        now: float,
        task_id: str | None,
        worker_id: str | None,
        kind: str,
        detail: str | None,
    ) -> None:
        conn.execute(
            "INSERT INTO events (at, task_id, worker_id, kind, detail) VALUES (?,?,?,?,?)",
            (now, task_id, worker_id, kind, detail),
        )

    def record_pid(self, task_id: str, worker_id: str, pid: int) -> None:
        with self._transaction(self._conn) as conn:
            conn.execute(
                "UPDATE tasks SET pid=? WHERE id=? AND worker_id=? AND state='running'",
                (pid, task_id, worker_id),
            )

    # -- finishing ----------------------------------------------------------------------------

    def _owned(self, conn: sqlite3.Connection, task_id: str, worker_id: str, attempt: int) -> bool:
        row = conn.execute(
            "SELECT 1 FROM tasks WHERE id=? AND state='running' AND worker_id=? AND attempts=?",
            (task_id, worker_id, attempt),
        ).fetchone()
        return row is not None

    def complete(
        self, task_id: str, worker_id: str, attempt: int, *, skipped: bool = False
    ) -> bool:
        """Mark the claim ``(worker_id, attempt)`` completed and promote ready dependents.

        Returns ``False`` (and changes nothing) when the claim is no longer the worker's, e.g.
        because the task was reclaimed after the worker was presumed dead.
        """
        with self._transaction(self._conn) as conn:
            return self._complete_locked(conn, task_id, worker_id, attempt, skipped, time.time())

    def complete_and_claim(
        self,
        task_id: str,
        worker_id: str,
        attempt: int,
        device_id: str,
        free_gb: float | None = None,
    ) -> tuple[bool, Claim | None]:
        """:meth:`complete` and :meth:`claim` the next task in one transaction (one lock round trip)."""
        with self._transaction(self._conn) as conn:
            now = time.time()
            done = self._complete_locked(conn, task_id, worker_id, attempt, False, now)
            choice = self._choose_locked(conn, worker_id, device_id, free_gb, now)
            return done, (
                self._take_locked(conn, worker_id, choice, now) if choice is not None else None
            )

    def _complete_locked(
        self,
        conn: sqlite3.Connection,
        task_id: str,
        worker_id: str,
        attempt: int,
        skipped: bool,
        now: float,
    ) -> bool:
        changed = conn.execute(
            "UPDATE tasks SET state='completed', finished_at=?, skipped=?, pid=NULL"
            " WHERE id=? AND state='running' AND worker_id=? AND attempts=?",
            (now, int(skipped), task_id, worker_id, attempt),
        ).rowcount
        if changed != 1:
            return False
        self._release(conn, task_id)
        conn.execute(
            "UPDATE models SET remaining_seconds = remaining_seconds - (SELECT estimated_seconds FROM tasks WHERE id=?)"
            " WHERE name=(SELECT model FROM tasks WHERE id=?)",
            (task_id, task_id),
        )
        conn.execute(
            "UPDATE tasks SET unmet = unmet - 1 WHERE id IN (SELECT task_id FROM deps WHERE dep_id=?)",
            (task_id,),
        )
        conn.execute(
            "UPDATE tasks SET state='ready', ready_at=? WHERE +state='pending' AND unmet=0"
            " AND id IN (SELECT task_id FROM deps WHERE dep_id=?)",
            (now, task_id),
        )
        conn.execute(
            "UPDATE workers SET state='idle', task_id=NULL, completed=completed+1, heartbeat_at=? WHERE id=?",
            (now, worker_id),
        )
        self._event(conn, now, task_id, worker_id, "skipped" if skipped else "complete", None)
        return True

    def fail(
        self,
        task_id: str,
        worker_id: str,
        attempt: int,
        failure: FailureClass,
        error: str,
        decision: RetryDecision,
    ) -> bool:
        """Record a failed attempt: back to ``ready`` after the decision's delay, or ``failed``."""
        now = time.time()
        with self._transaction(self._conn) as conn:
            if not self._owned(conn, task_id, worker_id, attempt):
                return False
            self._failed_locked(conn, task_id, failure, error, decision, now)
            conn.execute(
                "UPDATE workers SET state='idle', task_id=NULL, failures=failures+1, heartbeat_at=? WHERE id=?",
                (now, worker_id),
            )
            self._event(
                conn,
                now,
                task_id,
                worker_id,
                "retry" if decision.retry else "failed",
                f"{failure.value}: {error}",
            )
        return True

    def _failed_locked(
        self,
        conn: sqlite3.Connection,
        task_id: str,
        failure: FailureClass,
        error: str,
        decision: RetryDecision,
        now: float,
    ) -> None:
        if decision.retry:
            conn.execute(
                "UPDATE tasks SET state='ready', failures=failures+1, failure_class=?, error=?, not_before=?,"
                " ready_at=?, batch_size=?, seq_len=?, worker_id=NULL, pid=NULL WHERE id=?",
                (
                    failure.value,
                    error[:2000],
                    now + decision.delay_seconds,
                    now,
                    decision.batch_size,
                    decision.seq_len,
                    task_id,
                ),
            )
        else:
            conn.execute(
                "UPDATE tasks SET state='failed', failures=failures+1, failure_class=?, error=?, finished_at=?,"
                " pid=NULL WHERE id=?",
                (failure.value, error[:2000], now, task_id),
            )
        self._release(conn, task_id)

    @staticmethod
    def _release(conn: sqlite3.Connection, task_id: str) -> None:
        conn.execute("DELETE FROM reservations WHERE task_id=?", (task_id,))

    # -- monitor duties -----------------------------------------------------------------------

    def running(self) -> list[tuple[str, str, int, int | None, float, int]]:
        """(task id, worker id, attempt, pid, heartbeat_at, failures) of every running task."""
        return list(
            self._conn.execute(
                "SELECT id, worker_id, attempts, pid, COALESCE(heartbeat_at, started_at), failures FROM tasks"
                " WHERE state='running' ORDER BY seq"
            )
        )

    def reclaim(
        self,
        task_id: str,
        worker_id: str,
        attempt: int,
        *,
        failure: FailureClass | None,
        error: str,
        decision: RetryDecision | None = None,
    ) -> bool:
        """Take a running task back from a dead worker.

        With ``failure`` ``None`` (the whole run stopped) the attempt does not count: the task is
        simply ready again. Otherwise it counts as a failed attempt per ``decision``.
        """
        now = time.time()
        with self._transaction(self._conn) as conn:
            if not self._owned(conn, task_id, worker_id, attempt):
                return False
            if failure is None:
                conn.execute(
                    "UPDATE tasks SET state='ready', ready_at=?, worker_id=NULL, pid=NULL, not_before=0 WHERE id=?",
                    (now, task_id),
                )
                self._release(conn, task_id)
            else:
                self._failed_locked(
                    conn, task_id, failure, error, decision or RetryDecision(True), now
                )
            conn.execute("UPDATE workers SET state='dead', task_id=NULL WHERE id=?", (worker_id,))
            self._event(conn, now, task_id, worker_id, "reclaimed", error)
        return True

    def cancel_blocked(self, grace_seconds: float) -> list[str]:
        """Fail pending tasks whose dependency failed more than ``grace_seconds`` ago (transitively)."""
        now = time.time()
        cancelled: list[str] = []
        with self._transaction(self._conn) as conn:
            while True:
                rows = conn.execute(
                    "SELECT DISTINCT t.id, d.dep_id FROM tasks t JOIN deps d ON d.task_id = t.id"
                    " JOIN tasks p ON p.id = d.dep_id WHERE t.state='pending' AND p.state='failed'"
                    " AND (p.failure_class='dependency' OR p.finished_at <= ?)",
                    (now - grace_seconds,),
                ).fetchall()
                fresh = {task_id: dep for task_id, dep in rows}
                if not fresh:
                    break
                for task_id, dep in fresh.items():
                    conn.execute(
                        "UPDATE tasks SET state='failed', failure_class='dependency', error=?, finished_at=?"
                        " WHERE id=? AND state='pending'",
                        (f"dependency {dep} failed", now, task_id),
                    )
                    self._event(conn, now, task_id, None, "cancelled", dep)
                    cancelled.append(task_id)
        return cancelled

    def reset_failed(self) -> int:
        """Make failed tasks (and the dependents cancelled because of them) runnable again."""
        now = time.time()
        with self._transaction(self._conn) as conn:
            changed = conn.execute(
                "UPDATE tasks SET state='pending', failures=0, failure_class=NULL, error=NULL, finished_at=NULL,"
                " not_before=0 WHERE state='failed'"
            ).rowcount
            conn.execute(
                "UPDATE tasks SET unmet=(SELECT COUNT(*) FROM deps d JOIN tasks p ON p.id=d.dep_id"
                " WHERE d.task_id=tasks.id AND p.state != 'completed') WHERE state='pending'"
            )
            conn.execute(
                "UPDATE tasks SET state='ready', ready_at=? WHERE +state='pending' AND unmet=0",
                (now,),
            )
        return int(changed)

    def refresh_memory(self, profile: ModelProfile, planner: MemoryPlanner) -> int:
        """Re-plan the not-yet-started tasks of ``profile.name`` from a measured profile.

        Called when setup writes ``model_profile.json``: memory estimates, ``required_gpus``,
        model size and static priorities of pending and ready tasks are recomputed. Returns how
        many tasks changed; a task that would need more devices than the pool is an error.
        """
        changed = 0
        with self._transaction(self._conn) as conn:
            rows = conn.execute(
                "SELECT t.id, t.spec, t.seq, (SELECT COUNT(*) FROM deps d WHERE d.dep_id = t.id)"
                " FROM tasks t WHERE t.model=? AND t.state IN ('pending','ready')",
                (profile.name,),
            ).fetchall()
            for task_id, spec, seq, dependents in rows:
                old = structure(json.loads(spec), Task)
                task = planner.plan(attrs.evolve(old, batch_size=old.batch_size), profile)
                if task.required_gpus > len(self.devices):
                    raise UsageError(
                        f"task {task_id} now needs {task.required_gpus} devices but the pool has {len(self.devices)}"
                    )
                if task == old:
                    continue
                conn.execute(
                    "UPDATE tasks SET memory_gb=?, required_gpus=?, static_priority=?, spec=? WHERE id=?",
                    (
                        task.memory_gb,
                        task.required_gpus,
                        self._policy.static_priority(task, dependents, seq),
                        json.dumps(unstructure(task), sort_keys=True),
                        task_id,
                    ),
                )
                changed += 1
            self._event(
                self._conn,
                time.time(),
                None,
                None,
                "memory_refreshed",
                f"{profile.name}: {changed}",
            )
        return changed
