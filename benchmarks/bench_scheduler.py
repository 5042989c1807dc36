"""Scheduler benchmark: simulated makespan / lower bound per policy, and durable-queue claims per second.

Part 1 simulates the ``full`` suite shape (six models; then ``full-legacy``, the older six with
Qwen1.5-72B) on 1, 2, 4 and 8 virtual GPUs of 80 and 180 GB with the real policy code:
``small_first`` (ours) vs FIFO vs a static per-model assignment. The ratio is makespan /
max(total GPU-seconds / GPUs, critical path); 1.000 is optimal, "-" means the suite does not fit
that configuration (a task needs more devices than there are).

Part 2 drains a random graph (``--tasks``, default 5,000) with dependencies from the SQLite queue with 8 worker
processes (tasks complete instantly), side by side with the naive way: claiming through one global
static-priority scan per claim instead of per-model streams, which is what the queue did first.

Run: ``python benchmarks/bench_scheduler.py [--tasks N]`` (about 30-60 s on 2 cores).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from invarlock_core.errors import UsageError
from invarlock_core.scheduling import (
    Device,
    MemoryPlanner,
    TaskQueue,
    build_suite_graph,
    simulate,
)
from invarlock_core.scheduling.loadtest import drain_instantly, random_graph
from invarlock_core.scheduling.policy import Candidate
from invarlock_core.scheduling.tasks import TaskType

POLICIES = ("small_first", "fifo", "static")


def simulation_table(shape: str) -> None:
    graph_size = len(build_suite_graph(shape, MemoryPlanner(device_memory_gb=80)))
    print(f"makespan / lower bound, suite shape {shape!r} ({graph_size} tasks; 1.000 = optimal)")
    print(
        f"{'GPUs':>4} {'GB':>4} "
        + " ".join(f"{name:>12}" for name in POLICIES)
        + "   fifo/ours  static/ours"
    )
    for memory in (80, 180):
        graph = build_suite_graph(shape, MemoryPlanner(device_memory_gb=memory))
        for gpus in (1, 2, 4, 8):
            ratios: dict[str, float] = {}
            for name in POLICIES:
                with contextlib.suppress(UsageError):
                    ratios[name] = simulate(
                        graph, devices=gpus, device_memory_gb=memory, policy=name
                    ).ratio
            cells = " ".join(
                f"{ratios[name]:>12.3f}" if name in ratios else f"{'-':>12}" for name in POLICIES
            )
            extra = ""
            if "small_first" in ratios:
                ours = ratios["small_first"]
                extra = f"   {ratios['fifo'] / ours:>9.3f}  {ratios['static'] / ours:>11.3f}"
            print(f"{gpus:>4} {memory:>4} {cells}{extra}")


def _global_scan(self: TaskQueue, conn: Any, now: float, pruned: set[str]) -> Iterator[Candidate]:
    """The naive candidate source: one global scan in static order, ignoring pruning."""
    cursor = conn.execute(
        "SELECT id, type, model, memory_gb, required_gpus, static_priority, seq, ready_at FROM tasks"
        " WHERE state='ready' AND not_before <= ? ORDER BY static_priority DESC, seq",
        (now,),
    )
    for row in cursor:
        yield Candidate(
            row[0], TaskType(row[1]), row[2], row[3], row[4], row[5], row[6], row[7] or now
        )


def _drain(out: str, worker: str, device: str, naive: bool) -> None:
    if naive:
        TaskQueue._candidates = _global_scan  # type: ignore[method-assign]
    drain_instantly(out, worker, device)


def claims_per_second(n: int, naive: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        devices = [Device(f"cpu{i}", "cpu", 80.0) for i in range(8)]
        TaskQueue.create(tmp, random_graph(n, seed=7), devices).close()
        ctx = multiprocessing.get_context("fork")
        procs = [
            ctx.Process(target=_drain, args=(tmp, f"w{i}", f"cpu{i}", naive)) for i in range(8)
        ]
        started = time.perf_counter()
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        elapsed = time.perf_counter() - started
        with TaskQueue(tmp) as queue:
            assert queue.state_counts()["completed"] == n
    return n / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000, help="tasks in the queue benchmark")
    args = parser.parse_args()
    simulation_table("full")
    print()
    simulation_table("full-legacy")
    print()
    ours = claims_per_second(args.tasks, naive=False)
    naive = claims_per_second(args.tasks, naive=True)
    print(f"durable queue, 8 worker processes, {args.tasks} tasks with dependencies:")
    print(f"  per-model streams (ours): {ours:8.1f} claims/s")
    print(f"  one global scan (naive):  {naive:8.1f} claims/s")
    print(f"  ratio ours/naive:         {ours / naive:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
