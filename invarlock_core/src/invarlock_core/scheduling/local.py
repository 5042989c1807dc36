"""The ``local`` executor: one worker process per device on this machine, and a monitor.

The monitor (the process that called :meth:`LocalExecutor.run`) holds ``state/runner.lock`` so that
only one runner works on an output directory, reclaims the tasks of a previous runner that died,
starts the workers (``logs/gpu_<device>.log``), and then loops: reclaim the task of a worker that
died or went silent for ``WORKER_TIMEOUT`` (and restart the worker), cancel tasks blocked by failed
dependencies after the grace period, and write ``state/progress.json``, until nothing is left.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import attrs

from invarlock_core.errors import UsageError
from invarlock_core.scheduling.devices import Device, discover_devices
from invarlock_core.scheduling.executor import ExecutorOptions, RunSummary, summarize_run
from invarlock_core.scheduling.failures import FailureClass, decide_retry
from invarlock_core.scheduling.launch import die_with_parent, kill_task_group
from invarlock_core.scheduling.store import TaskQueue
from invarlock_core.scheduling.worker import EXIT_MAX_FAILURES, SHUTDOWN_FILE, shutdown_requested

__all__ = [
    "LocalExecutor",
    "LocalExecutorFactory",
    "active_runner",
    "reclaim_after_crash",
    "runner_lock",
]


@contextlib.contextmanager
def runner_lock(output_dir: Path) -> Iterator[IO[str]]:
    """Hold ``state/runner.lock`` (an OS lock, released even by ``kill -9``)."""
    path = output_dir / "state" / "runner.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the whole run
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"another runner is working on {output_dir}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield handle
    finally:
        handle.close()


def active_runner(output_dir: Path) -> int | None:
    """The pid of the runner working on ``output_dir`` now, or ``None`` when none holds the lock."""
    path = output_dir / "state" / "runner.lock"
    if not path.exists():
        return None
    with open(path, encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = handle.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def reclaim_after_crash(queue: TaskQueue) -> list[str]:
    """Put every running task of a dead runner back to ready (the attempt does not count).

    Call only while holding :func:`runner_lock`: then no worker of ours is alive. Leftover task
    process groups are killed first so that nothing runs twice.
    """
    reclaimed = []
    for task_id, worker_id, attempt, pid, _, _ in queue.running():
        if pid is not None:
            kill_task_group(pid, task_id)
        if queue.reclaim(
            task_id, worker_id, attempt, failure=None, error="runner stopped; resumed"
        ):
            reclaimed.append(task_id)
    return reclaimed


@attrs.define
class _Slot:
    device: Device
    generation: int = 0
    process: subprocess.Popen[bytes] | None = None
    worker_id: str = ""
    state: str = "new"


class LocalExecutor:
    """Workers on this machine's devices (CUDA GPUs, or CPU slots)."""

    def __init__(self, options: ExecutorOptions) -> None:
        self.options = options
        self.knobs = options.knobs

    def devices(self) -> list[Device]:
        return discover_devices(self.knobs)

    def run(self, queue: TaskQueue) -> RunSummary:
        output_dir = queue.output_dir
        started = time.monotonic()
        with runner_lock(output_dir):
            reclaim_after_crash(queue)
            with contextlib.suppress(FileNotFoundError):
                (output_dir / SHUTDOWN_FILE).unlink()
            (output_dir / "workers").mkdir(parents=True, exist_ok=True)
            slots = [_Slot(device) for device in queue.devices]
            try:
                reason = self._monitor(queue, slots)
            finally:
                self._stop(slots)
            return summarize_run(queue, time.monotonic() - started, reason)

    def _start(self, queue: TaskQueue, slot: _Slot) -> None:
        slot.generation += 1
        slot.worker_id = f"{slot.device.id}.{os.getpid()}.{slot.generation}"
        log_path = queue.output_dir / "logs" / f"gpu_{slot.device.id}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            slot.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "invarlock_core.scheduling.worker",
                    str(queue.output_dir),
                    "--device",
                    slot.device.id,
                    "--worker-id",
                    slot.worker_id,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(os.getpid()),
            )
        slot.state = "running"

    def _monitor(self, queue: TaskQueue, slots: list[_Slot]) -> str:
        knobs = self.knobs
        interval = max(0.01, min(knobs.worker_idle_sleep, 1.0))
        for slot in slots:
            self._start(queue, slot)
        while True:
            shutting_down = shutdown_requested(queue.output_dir)
            for slot in slots:
                self._check(queue, slot, restart=not shutting_down)
            self._reap_silent(queue, slots)
            queue.cancel_blocked(knobs.cancel_blocked_tasks_grace_seconds)
            queue.write_progress()
            alive = [slot for slot in slots if slot.state == "running"]
            if queue.unfinished() == 0:
                return ""
            if shutting_down and not alive:
                return "shutdown requested"
            if not alive:
                return "every worker stopped after WORKER_MAX_FAILURES failed tasks"
            time.sleep(interval)

    def _check(self, queue: TaskQueue, slot: _Slot, *, restart: bool) -> None:
        if slot.process is None or slot.state != "running":
            return
        code = slot.process.poll()
        if code is None:
            return
        if code == EXIT_MAX_FAILURES:
            slot.state = "stopped"
            return
        if code == 0:
            slot.state = "done"
            return
        self._reclaim_worker(
            queue, slot.worker_id, f"worker {slot.worker_id} died (exit status {code})"
        )
        slot.state = "dead"
        if restart and queue.unfinished() > 0:
            self._start(queue, slot)

    def _reclaim_worker(self, queue: TaskQueue, worker_id: str, error: str) -> None:
        for task_id, owner, attempt, pid, _, failures in queue.running():
            if owner != worker_id:
                continue
            if pid is not None:
                kill_task_group(pid, task_id)
            task = queue.task(task_id)
            decision = decide_retry(
                FailureClass.UNKNOWN,
                failures + 1,
                self.knobs,
                max_retries=task.max_retries,
                batch_size=task.batch_size,
                seq_len=task.seq_len,
            )
            queue.reclaim(
                task_id,
                owner,
                attempt,
                failure=FailureClass.UNKNOWN,
                error=error,
                decision=decision,
            )

    def _reap_silent(self, queue: TaskQueue, slots: list[_Slot]) -> None:
        """A worker whose heartbeat is older than WORKER_TIMEOUT is hung: kill it (it is restarted)."""
        deadline = time.time() - self.knobs.worker_timeout
        silent = {
            record.id
            for record in queue.workers()
            if record.state == "busy" and record.heartbeat_at < deadline
        }
        for slot in slots:
            if (
                slot.worker_id in silent
                and slot.process is not None
                and slot.process.poll() is None
            ):
                slot.process.kill()
                slot.process.wait()

    @staticmethod
    def _stop(slots: list[_Slot]) -> None:
        for slot in slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.terminate()
        for slot in slots:
            if slot.process is not None:
                try:
                    slot.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    slot.process.kill()
                    slot.process.wait()


@attrs.frozen
class LocalExecutorFactory:
    """The default executor."""

    @property
    def name(self) -> str:
        return "local"

    @property
    def summary(self) -> str:
        return "one worker process per local GPU (or CPU slot); each task a pinned subprocess"

    def unavailable_reason(self) -> str | None:
        return None

    def create(self, options: ExecutorOptions) -> LocalExecutor:
        return LocalExecutor(options)
