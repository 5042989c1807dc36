"""The worker loop: one process per device.

``python -m invarlock_core.scheduling.worker OUTPUT_DIR --device ID --worker-id ID``::

    loop:
      shutdown requested (workers/SHUTDOWN)? -> exit 0
      nothing left to do?                   -> exit 0
      probe free memory; claim under the queue's write lock (+ reservations)
        none -> heartbeat, sleep WORKER_IDLE_SLEEP, loop
        task -> outputs already there (RESUME_MODE)? complete as skipped
                else run it (heartbeats while it runs), complete or fail + retry decision
      WORKER_MAX_FAILURES failures -> exit 75
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from invarlock_core.scheduling.devices import Device, GpuProbe
from invarlock_core.scheduling.failures import FailureClass, classify_failure, decide_retry
from invarlock_core.scheduling.knobs import SchedulingKnobs
from invarlock_core.scheduling.launch import LaunchResult, run_task_process
from invarlock_core.scheduling.store import Claim, TaskQueue

__all__ = [
    "EXIT_MAX_FAILURES",
    "SHUTDOWN_FILE",
    "execute_claim",
    "main",
    "record_outcome",
    "run_worker",
    "shutdown_requested",
    "skip_if_done",
]

EXIT_MAX_FAILURES = 75
"""Exit status of a worker that stopped after ``WORKER_MAX_FAILURES`` failed tasks."""
SHUTDOWN_FILE = Path("workers") / "SHUTDOWN"


def shutdown_requested(output_dir: Path) -> bool:
    return (output_dir / SHUTDOWN_FILE).exists()


def _error_line(result: LaunchResult) -> str:
    if result.error:
        return result.error
    if result.timed_out:
        return f"timed out after {result.seconds:.0f} s"
    lines = [
        line for line in result.log_tail.splitlines() if line.strip() and not line.startswith("===")
    ]
    last = lines[-1].strip() if lines else ""
    return f"exit status {result.returncode}" + (f": {last[:300]}" if last else "")


def skip_if_done(queue: TaskQueue, worker_id: str, claim: Claim) -> bool:
    """Under ``RESUME_MODE``, complete (as skipped) a task whose declared outputs all exist."""
    outputs = claim.task.outputs
    if (
        queue.knobs.resume_mode
        and outputs
        and all((queue.output_dir / out).exists() for out in outputs)
    ):
        queue.complete(claim.task.id, worker_id, claim.attempt, skipped=True)
        return True
    return False


def record_outcome(queue: TaskQueue, worker_id: str, claim: Claim, result: LaunchResult) -> bool:
    """Complete the claim, or fail it with its class and retry decision; ``True`` when completed."""
    task = claim.task
    missing = [out for out in task.outputs if not (queue.output_dir / out).exists()]
    if result.ok and not missing:
        return queue.complete(task.id, worker_id, claim.attempt)
    if result.ok:
        failure = FailureClass.PERMANENT
        error = f"declared output {missing[0]} was not written"
    elif result.error is not None:
        failure, error = FailureClass.PERMANENT, result.error
    else:
        failure = classify_failure(result.returncode, result.log_tail, timed_out=result.timed_out)
        error = _error_line(result)
    decision = decide_retry(
        failure,
        claim.failures + 1,
        queue.knobs,
        max_retries=task.max_retries,
        batch_size=task.batch_size,
        seq_len=task.seq_len,
    )
    queue.fail(task.id, worker_id, claim.attempt, failure, error, decision)
    return False


def execute_claim(queue: TaskQueue, worker_id: str, claim: Claim) -> bool:
    """Run one claimed task and record the outcome; ``True`` when it completed."""
    if skip_if_done(queue, worker_id, claim):
        return True
    task = claim.task

    def beat() -> None:
        queue.heartbeat(worker_id, state="busy", task_id=task.id)

    result = run_task_process(
        task,
        claim.devices,
        claim.attempt,
        queue.output_dir,
        timeout=queue.knobs.timeout_for(task.type.value),
        heartbeat=beat,
        heartbeat_interval=queue.knobs.worker_heartbeat_interval,
        on_start=lambda pid: queue.record_pid(task.id, worker_id, pid),
    )
    return record_outcome(queue, worker_id, claim, result)


def run_worker(output_dir: Path, device_id: str, worker_id: str, knobs: SchedulingKnobs) -> int:
    """The loop; returns the process exit status."""
    import os

    queue = TaskQueue(output_dir, knobs=knobs)
    queue.knobs = queue.load_knobs() or knobs
    knobs = queue.knobs
    device = next((d for d in queue.devices if d.id == device_id), None)
    if device is None:
        print(f"error: device {device_id!r} is not in this queue's pool", file=sys.stderr)
        return 2
    probe = GpuProbe(knobs)
    queue.register_worker(worker_id, device.id, os.getpid())
    failures = 0
    while True:
        if shutdown_requested(output_dir):
            queue.set_worker_state(worker_id, "stopped")
            return 0
        if not queue.has_unfinished():
            queue.set_worker_state(worker_id, "done")
            return 0
        free = _free(probe, device)
        claim = queue.claim(worker_id, device.id, free)
        if claim is None:
            queue.heartbeat(worker_id, state="idle", free_gb=free)
            time.sleep(knobs.worker_idle_sleep)
            continue
        print(
            f"{time.strftime('%H:%M:%S')} {worker_id}: {claim.task.id} (attempt {claim.attempt})",
            flush=True,
        )
        if not execute_claim(queue, worker_id, claim):
            failures += 1
            if failures >= knobs.worker_max_failures:
                print(f"{worker_id}: stopping after {failures} failed tasks", flush=True)
                queue.set_worker_state(worker_id, "stopped")
                return EXIT_MAX_FAILURES


def _free(probe: GpuProbe, device: Device) -> float:
    return probe.free_gb(device)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m invarlock_core.scheduling.worker")
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--device", required=True)
    parser.add_argument("--worker-id", required=True)
    args = parser.parse_args(argv)
    return run_worker(args.output_dir, args.device, args.worker_id, SchedulingKnobs.from_env())


if __name__ == "__main__":
    sys.exit(main())
