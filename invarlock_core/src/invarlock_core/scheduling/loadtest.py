"""Synthetic load for the durable queue: random DAGs and a worker whose tasks finish instantly.

Used by the queue's concurrency test and ``benchmarks/bench_scheduler.py``; also handy to check a
filesystem before putting a real run's ``OUTPUT_DIR`` on it.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from invarlock_core.scheduling.store import TaskQueue
from invarlock_core.scheduling.tasks import Task, TaskGraph

__all__ = ["drain_instantly", "random_graph"]


def random_graph(tasks: int, *, seed: int, models: int = 6, max_deps: int = 3) -> TaskGraph:
    """``tasks`` tasks over ``models`` models; each depends on up to ``max_deps`` earlier tasks."""
    rng = random.Random(seed)
    out = []
    for index in range(tasks):
        picks = rng.randint(0, max_deps) if index else 0
        deps = sorted({f"t{rng.randrange(index)}" for _ in range(picks)})
        out.append(
            Task(f"t{index}", deps=tuple(deps), model=f"m{index % models}", estimated_seconds=1.0)
        )
    return TaskGraph(tuple(out), name=f"random-{tasks}-{seed}")


def drain_instantly(
    output_dir: str | Path, worker_id: str, device_id: str, *, idle_sleep: float = 0.005
) -> list[str]:
    """Claim and complete tasks (completion and next claim in one transaction) until none is left;
    returns the ids this worker claimed, in order."""
    claimed: list[str] = []
    with TaskQueue(output_dir) as queue:
        queue.register_worker(worker_id, device_id, None)
        claim = None
        while True:
            if claim is None:
                if not queue.has_unfinished():
                    return claimed
                claim = queue.claim(worker_id, device_id)
                if claim is None:
                    time.sleep(idle_sleep)
                    continue
            claimed.append(claim.task.id)
            done, claim = queue.complete_and_claim(
                claim.task.id, worker_id, claim.attempt, device_id
            )
            if not done:
                raise RuntimeError(f"{worker_id} lost its claim on {claimed[-1]}")
