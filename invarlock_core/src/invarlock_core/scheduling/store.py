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

The queue is split by concern: :mod:`.queue_database` (schema, creation, opening, the lock),
:mod:`.queue_claims` (workers, claims, leases, completion and failure) and :mod:`.queue_status`
(read-only queries); :class:`TaskQueue` is all three.
"""

from __future__ import annotations

from invarlock_core.scheduling.queue_claims import QueueClaims
from invarlock_core.scheduling.queue_database import QUEUE_FILE
from invarlock_core.scheduling.queue_records import Claim, QueueProgress, TaskRecord, WorkerRecord
from invarlock_core.scheduling.queue_status import QueueStatus

__all__ = ["QUEUE_FILE", "Claim", "QueueProgress", "TaskQueue", "TaskRecord", "WorkerRecord"]


class TaskQueue(QueueClaims, QueueStatus):
    """A handle on ``OUTPUT_DIR/state/queue.sqlite3`` (one per process; not thread-shared):
    :meth:`create` or open it, claim and finish tasks, ask for its status."""
