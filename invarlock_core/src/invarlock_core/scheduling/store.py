"""The durable task queue: one SQLite database (stdlib ``sqlite3``) under ``OUTPUT_DIR/state/``.

Every state change is one transaction. Claims run under ``BEGIN IMMEDIATE`` (the database's write
lock is the scheduler lock), so two workers can never claim the same task or reserve the same
device: a claim reads the ready set in static-priority order, lets the shared policy code
(:func:`~invarlock_core.scheduling.policy.choose`) pick the best task that fits, marks it running
and inserts one reservation row per device it gets, all or nothing. Completing a task decrements
its dependents' unmet-dependency counts and promotes those that reach zero from ``pending`` to
``ready`` in the same transaction. Reservations carry an expiry renewed by heartbeats
(``GPU_RESERVATION_TTL``); running tasks of dead workers are reclaimed; dependents of a failed
task are failed after ``CANCEL_BLOCKED_TASKS_GRACE_SECONDS``. The journal is WAL, so readers
(``invarlock schedule status``) never block workers.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from invarlock_core.atomic import atomic_write_json
from invarlock_core.errors import InputError, UsageError
from invarlock_core.scheduling.devices import Device
from invarlock_core.scheduling.failures import FailureClass, RetryDecision
from invarlock_core.scheduling.knobs import SchedulingKnobs
from invarlock_core.scheduling.memory import MemoryPlanner, ModelProfile
from invarlock_core.scheduling.policy import (
    Candidate,
    Choice,
    DeviceSlot,
    ModelProgress,
    Policy,
    SchedulerView,
    choose,
    make_policy,
)
from invarlock_core.scheduling.tasks import Task, TaskGraph, TaskState, TaskType
from invarlock_core.serialization import structure, unstructure

__all__ = ["QUEUE_FILE", "Claim", "QueueProgress", "TaskQueue", "TaskRecord", "WorkerRecord"]

QUEUE_FILE = "queue.sqlite3"
_SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL, type TEXT NOT NULL, model TEXT NOT NULL,
    state TEXT NOT NULL, static_priority REAL NOT NULL, memory_gb REAL NOT NULL,
    required_gpus INTEGER NOT NULL, estimated_seconds REAL NOT NULL, unmet INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0,
    batch_size INTEGER, seq_len INTEGER, not_before REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, ready_at REAL, started_at REAL, finished_at REAL,
    heartbeat_at REAL, worker_id TEXT, devices TEXT, pid INTEGER,
    failure_class TEXT, error TEXT, skipped INTEGER NOT NULL DEFAULT 0, spec TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_ready ON tasks (state, static_priority DESC, seq);
CREATE INDEX IF NOT EXISTS tasks_state_model ON tasks (state, model, static_priority DESC, seq);
CREATE INDEX IF NOT EXISTS tasks_state_ready_at ON tasks (state, ready_at);
CREATE TABLE IF NOT EXISTS deps (task_id TEXT NOT NULL, dep_id TEXT NOT NULL, PRIMARY KEY (task_id, dep_id));
CREATE INDEX IF NOT EXISTS deps_by_dep ON deps (dep_id);
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, total_gb REAL NOT NULL, cuda_index TEXT,
    free_gb REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS reservations (
    device TEXT PRIMARY KEY, task_id TEXT NOT NULL, worker_id TEXT NOT NULL, expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY, device TEXT NOT NULL, pid INTEGER, host TEXT, state TEXT NOT NULL,
    task_id TEXT, started_at REAL NOT NULL, heartbeat_at REAL NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0, completed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS models (name TEXT PRIMARY KEY, total_seconds REAL NOT NULL, remaining_seconds REAL NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, task_id TEXT, worker_id TEXT,
    kind TEXT NOT NULL, detail TEXT
);
"""

_TERMINAL = (TaskState.COMPLETED.value, TaskState.FAILED.value)


@attrs.frozen
class Claim:
    """A task a worker now owns: run it on ``devices`` as attempt ``attempt``."""

    task: Task
    devices: tuple[Device, ...]
    attempt: int
    failures: int
    score: float


@attrs.frozen
class TaskRecord:
    """One row of the queue, for status displays and tests."""

    id: str
    type: str
    model: str
    state: str
    attempts: int
    failures: int
    devices: tuple[str, ...]
    worker_id: str | None
    failure_class: str | None
    error: str | None
    skipped: bool
    batch_size: int | None
    seq_len: int | None
    created_at: float
    started_at: float | None
    finished_at: float | None


@attrs.frozen
class WorkerRecord:
    id: str
    device: str
    pid: int | None
    host: str | None
    state: str
    task_id: str | None
    heartbeat_at: float
    failures: int
    completed: int


@attrs.frozen
class QueueProgress:
    """Counts by state (overall and per model), workers, and the time of the snapshot."""

    updated_at: float
    total: int
    states: Mapping[str, int]
    models: Mapping[str, Mapping[str, int]]
    workers: tuple[WorkerRecord, ...]
    policy: str

    @property
    def finished(self) -> bool:
        return sum(self.states.get(state, 0) for state in _TERMINAL) == self.total

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = unstructure(self)
        data["format"] = "invarlock-schedule-progress-v1"
        data["finished"] = self.finished
        return data


@contextlib.contextmanager
def _plain_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _host() -> str:
    return os.uname().nodename if hasattr(os, "uname") else "localhost"


class TaskQueue:
    """A handle on ``OUTPUT_DIR/state/queue.sqlite3`` (one per process; not thread-shared)."""

    def __init__(self, output_dir: str | Path, *, knobs: SchedulingKnobs | None = None) -> None:
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / "state" / QUEUE_FILE
        if not self.path.is_file():
            raise InputError(
                f"{self.output_dir} has no scheduler queue (state/{QUEUE_FILE} is missing)"
            )
        self.knobs = knobs or SchedulingKnobs()
        self._conn = self._connect(self.path)
        self._lock_file = open(self.path.with_name("scheduler.lock"), "a+b")  # noqa: SIM115
        meta = self.meta()
        if meta.get("schema_version") != _SCHEMA_VERSION:
            raise InputError(
                f"{self.path} is not an InvarLock queue of schema version {_SCHEMA_VERSION}"
            )
        self.policy_name = meta["policy"]
        self.devices = tuple(self._devices())
        self._policy: Policy = self._make_policy()

    # -- creation -----------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        output_dir: str | Path,
        graph: TaskGraph,
        devices: Sequence[Device],
        *,
        policy: str = "small_first",
        knobs: SchedulingKnobs | None = None,
    ) -> TaskQueue:
        """Create the queue for ``graph``; an existing queue in ``output_dir`` is an error."""
        if not devices:
            raise UsageError("the scheduler needs at least one device")
        path = Path(output_dir) / "state" / QUEUE_FILE
        if path.exists():
            raise UsageError(
                f"{output_dir} already holds a queue; resume it or choose another directory"
            )
        widest = max((task.required_gpus for task in graph), default=1)
        if widest > len(devices):
            wide = next(task for task in graph if task.required_gpus == widest)
            raise UsageError(
                f"task {wide.id} needs {widest} devices but the pool has {len(devices)}"
            )
        policy_impl = make_policy(policy, graph.tasks, [device.id for device in devices])
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{QUEUE_FILE}.creating")
        for leftover in (staging, Path(f"{staging}-wal"), Path(f"{staging}-shm")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        conn = cls._connect(staging)
        now = time.time()
        dependents = graph.dependents()
        with _plain_transaction(conn):
            for key, value in {
                "schema_version": _SCHEMA_VERSION,
                "policy": policy,
                "graph_name": graph.name,
                "created_at": repr(now),
                "static_assignment": json.dumps(
                    {m: sorted(d) for m, d in getattr(policy_impl, "assignment", {}).items()}
                ),
            }.items():
                conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))
            conn.executemany(
                "INSERT INTO devices (id, kind, total_gb, cuda_index, free_gb, updated_at) VALUES (?,?,?,?,?,?)",
                [(d.id, d.kind, d.total_gb, d.cuda_index, d.total_gb, now) for d in devices],
            )
            rows = []
            for seq, task in enumerate(graph.tasks):
                unmet = len(set(task.deps))
                rows.append(
                    (
                        task.id,
                        seq,
                        task.type.value,
                        task.model,
                        TaskState.READY.value if unmet == 0 else TaskState.PENDING.value,
                        policy_impl.static_priority(task, len(dependents[task.id]), seq),
                        task.memory_gb,
                        task.required_gpus,
                        task.estimated_seconds,
                        unmet,
                        task.batch_size,
                        task.seq_len,
                        now,
                        now if unmet == 0 else None,
                        json.dumps(unstructure(task), sort_keys=True),
                    )
                )
            conn.executemany(
                "INSERT INTO tasks (id, seq, type, model, state, static_priority, memory_gb, required_gpus,"
                " estimated_seconds, unmet, batch_size, seq_len, created_at, ready_at, spec)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            conn.executemany(
                "INSERT OR IGNORE INTO deps (task_id, dep_id) VALUES (?, ?)",
                [(task.id, dep) for task in graph.tasks for dep in task.deps],
            )
            totals: dict[str, float] = {}
            for task in graph.tasks:
                totals[task.model] = totals.get(task.model, 0.0) + task.estimated_seconds
            conn.executemany(
                "INSERT INTO models (name, total_seconds, remaining_seconds) VALUES (?, ?, ?)",
                [(name, total, total) for name, total in totals.items()],
            )
            conn.execute(
                "INSERT INTO events (at, kind, detail) VALUES (?, 'created', ?)",
                (now, str(len(graph))),
            )
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        os.replace(staging, path)
        for leftover in (Path(f"{staging}-wal"), Path(f"{staging}-shm")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        return cls(output_dir, knobs=knobs)

    @staticmethod
    def exists(output_dir: str | Path) -> bool:
        return (Path(output_dir) / "state" / QUEUE_FILE).is_file()

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=60.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA mmap_size=268435456")
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.executescript(_SCHEMA)
        return conn

    @contextlib.contextmanager
    def _transaction(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        """A write transaction under the scheduler lock.

        ``state/scheduler.lock`` (an OS file lock: fair, released by ``kill -9``) serialises
        writers before SQLite's own lock, so waiting writers wake as soon as it is free instead of
        polling SQLite's busy handler.
        """
        fcntl.flock(self._lock_file, fcntl.LOCK_EX)
        try:
            with _plain_transaction(conn):
                yield conn
        finally:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)

    def _try_lock(self, timeout: float) -> bool:
        """Take the scheduler lock within ``timeout`` seconds (polling with a growing pause)."""
        deadline = time.monotonic() + timeout
        pause = 0.001
        while True:
            try:
                fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(pause)
                pause = min(pause * 2, 0.02)

    def close(self) -> None:
        self._conn.close()
        self._lock_file.close()

    def __enter__(self) -> TaskQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ------------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        return dict(self._conn.execute("SELECT key, value FROM meta").fetchall())

    def save_knobs(self, knobs: SchedulingKnobs) -> None:
        """Store the run's knobs so that every worker process uses the same settings."""
        self.knobs = knobs
        with self._transaction(self._conn) as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('knobs', ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (json.dumps(unstructure(knobs), sort_keys=True),),
            )

    def load_knobs(self) -> SchedulingKnobs | None:
        raw = self.meta().get("knobs")
        return structure(json.loads(raw), SchedulingKnobs) if raw else None

    def _devices(self) -> list[Device]:
        rows = self._conn.execute(
            "SELECT id, kind, total_gb, cuda_index FROM devices ORDER BY rowid"
        )
        return [Device(row[0], row[1], row[2], row[3]) for row in rows]

    def _make_policy(self) -> Policy:
        if self.policy_name == "static":
            from invarlock_core.scheduling.policy import StaticPolicy

            raw = json.loads(self.meta().get("static_assignment", "{}"))
            return StaticPolicy({model: frozenset(ids) for model, ids in raw.items()})
        return make_policy(self.policy_name)

    def task(self, task_id: str) -> Task:
        row = self._conn.execute("SELECT spec FROM tasks WHERE id = ?", (task_id,)).fetchone()
        if row is None:
            raise UsageError(f"no task {task_id!r} in the queue")
        return structure(json.loads(row[0]), Task)

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
