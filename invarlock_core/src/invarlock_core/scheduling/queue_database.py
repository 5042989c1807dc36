"""The queue's SQLite database: its schema, creating it from a task graph, opening it, the
scheduler lock and the run's stored settings (:class:`QueueDatabase`, the base of
:class:`~invarlock_core.scheduling.store.TaskQueue`)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Self

from invarlock_core.errors import InputError, UsageError
from invarlock_core.scheduling.devices import Device
from invarlock_core.scheduling.knobs import SchedulingKnobs
from invarlock_core.scheduling.policy import (
    Policy,
    make_policy,
)
from invarlock_core.scheduling.tasks import Task, TaskGraph, TaskState
from invarlock_core.serialization import structure, unstructure

__all__ = ["QUEUE_FILE", "QueueDatabase"]

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


@contextlib.contextmanager
def _plain_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")



class QueueDatabase:
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
    ) -> Self:
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

    def __enter__(self) -> Self:
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

