"""Running one task attempt as a real subprocess.

The process gets its own session (process group), so a timeout kills everything it started
(``SIGTERM`` to the group, then ``SIGKILL``). On Linux it also asks the kernel to kill it if the
worker dies (``PR_SET_PDEATHSIG``), so no task outlives a crashed worker and runs twice. Output goes
to ``logs/tasks/<task id>.log`` (appended, one header per attempt), live. The environment pins the
devices (``CUDA_VISIBLE_DEVICES``) and tells the task who it is:

``INVARLOCK_TASK_ID``, ``INVARLOCK_TASK_ATTEMPT``, ``INVARLOCK_TASK_PARAMS`` (a JSON file with the
command's params), ``INVARLOCK_OUTPUT_DIR``, ``INVARLOCK_DEVICES`` and, when the task has them,
``INVARLOCK_EVAL_BATCH`` / ``INVARLOCK_SEQ_LEN`` (halved on OOM retries). An entry-point task
whose command sets ``INVARLOCK_WARM_START=1`` is started as a fork of the warm worker instead of a
fresh interpreter (:mod:`invarlock_core.scheduling.warm_start`), with the same isolation.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs

from invarlock_core.atomic import atomic_write_json
from invarlock_core.scheduling.devices import Device
from invarlock_core.scheduling.tasks import Task
from invarlock_core.scheduling.warm_start import ForkedTask, fork_entry_point, wants_warm_start

__all__ = [
    "LaunchResult",
    "die_with_parent",
    "kill_process_group",
    "kill_task_group",
    "run_task_process",
    "task_environment",
]

_TAIL_BYTES = 64 * 1024
_KILL_GRACE_SECONDS = 5.0
_PR_SET_PDEATHSIG = 1


@attrs.frozen
class LaunchResult:
    """How an attempt ended."""

    returncode: int | None
    timed_out: bool
    seconds: float
    log_tail: str
    error: str | None = None
    """Why the process could not start at all (then ``returncode`` is ``None``)."""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def task_environment(
    task: Task, devices: Sequence[Device], attempt: int, output_dir: Path, params_path: Path
) -> dict[str, str]:
    env = dict(os.environ)
    if task.command is not None:
        env.update(task.command.env)
    indices = [device.cuda_index for device in devices if device.cuda_index is not None]
    env["CUDA_VISIBLE_DEVICES"] = ",".join(indices)
    env["INVARLOCK_DEVICES"] = ",".join(device.id for device in devices)
    env["INVARLOCK_TASK_ID"] = task.id
    env["INVARLOCK_TASK_TYPE"] = task.type.value
    env["INVARLOCK_TASK_ATTEMPT"] = str(attempt)
    env["INVARLOCK_TASK_PARAMS"] = str(params_path)
    env["INVARLOCK_OUTPUT_DIR"] = str(output_dir)
    if task.batch_size is not None:
        env["INVARLOCK_EVAL_BATCH"] = str(task.batch_size)
    if task.seq_len is not None:
        env["INVARLOCK_SEQ_LEN"] = str(task.seq_len)
    return env


def die_with_parent(parent: int) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child get SIGKILL when ``parent`` dies (Linux)."""

    def setup() -> None:  # runs in the child between fork and exec
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError, AttributeError):
                libc = ctypes.CDLL(None, use_errno=True)
                libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)

    return setup


def kill_process_group(pid: int, *, grace: float = _KILL_GRACE_SECONDS) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL it after ``grace`` seconds."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.killpg(pid, signal.SIGKILL)


def kill_task_group(pid: int, task_id: str, *, grace: float = 1.0) -> bool:
    """Kill the process group of a task started by a previous worker, if it is still that task.

    The pid is checked against ``/proc/<pid>/environ`` (``INVARLOCK_TASK_ID``) so that a reused pid
    never gets an unrelated process group killed. Returns whether a group was killed.
    """
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    if f"INVARLOCK_TASK_ID={task_id}".encode() not in environ.split(b"\0"):
        return False
    kill_process_group(pid, grace=grace)
    return True


def _argv(task: Task, params_path: Path) -> list[str]:
    command = task.command
    assert command is not None
    if command.argv is not None:
        return list(command.argv)
    return [
        sys.executable,
        "-m",
        "invarlock_core.scheduling.entry",
        str(command.entry_point),
        str(params_path),
    ]


def _tail(path: Path, start: int) -> str:
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(start, size - _TAIL_BYTES))
        return handle.read().decode("utf-8", errors="replace")


def run_task_process(
    task: Task,
    devices: Sequence[Device],
    attempt: int,
    output_dir: Path,
    *,
    timeout: float,
    heartbeat: Callable[[], None],
    heartbeat_interval: float,
    on_start: Callable[[int], None] | None = None,
) -> LaunchResult:
    """Run ``task`` to completion (or timeout), calling ``heartbeat`` while it runs."""
    log_path = output_dir / "logs" / "tasks" / f"{task.id}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    params_path = output_dir / "state" / "params" / f"{task.id}.json"
    params = dict(task.command.params) if task.command is not None else {}
    atomic_write_json(params_path, params)
    started = time.monotonic()
    with open(log_path, "ab") as log:
        start_offset = log.tell()
        header = f"=== attempt {attempt} of {task.id} on {','.join(d.id for d in devices)} ===\n"
        log.write(header.encode("utf-8"))
        log.flush()
        if task.command is None:
            log.write(b"PermanentError: task has no command to run\n")
            return LaunchResult(
                None, False, 0.0, "task has no command", "task has no command to run"
            )
        cwd = output_dir
        if task.command.cwd:
            cwd = (
                Path(task.command.cwd)
                if os.path.isabs(task.command.cwd)
                else output_dir / task.command.cwd
            )
        env = task_environment(task, devices, attempt, output_dir, params_path)
        proc: subprocess.Popen[bytes] | ForkedTask
        try:
            if wants_warm_start(env, task.command.entry_point):
                proc = fork_entry_point(
                    str(task.command.entry_point),
                    params_path,
                    env,
                    cwd,
                    log.fileno(),
                    die_with_parent(os.getpid()),
                )
            else:
                proc = subprocess.Popen(
                    _argv(task, params_path),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=cwd,
                    env=env,
                    start_new_session=True,
                    preexec_fn=die_with_parent(os.getpid()),
                )
        except OSError as exc:
            message = f"cannot start {task.id}: {exc}"
            log.write(f"FileNotFoundError: {message}\n".encode())
            return LaunchResult(None, False, 0.0, message, message)
    if on_start is not None:
        on_start(proc.pid)
    deadline = started + timeout
    timed_out = False
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            kill_process_group(proc.pid)
            proc.wait()
            break
        try:
            proc.wait(timeout=min(heartbeat_interval, remaining))
            break
        except subprocess.TimeoutExpired:
            heartbeat()
    # The leader exited; make sure nothing it started lingers in its group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if timed_out:
        with open(log_path, "ab") as log:
            log.write(f"\n=== timed out after {timeout:g} s: process group killed ===\n".encode())
    return LaunchResult(
        proc.returncode, timed_out, time.monotonic() - started, _tail(log_path, start_offset)
    )
