"""``invarlock schedule``: simulate policies, build suite graphs, run/resume/stop a queue, show status.

* ``invarlock schedule simulate --suite-shape full --gpus 8 --gpu-memory 80 [--policy small_first]``
* ``invarlock schedule graph --suite-shape subset --gpu-memory 80 --output graph.json``
* ``invarlock schedule run OUTPUT_DIR --graph graph.json`` / ``invarlock schedule run OUTPUT_DIR --resume``
* ``invarlock schedule status OUTPUT_DIR [--tasks] [--json]``
* ``invarlock schedule stop OUTPUT_DIR``
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from invarlock_core.cli.arg_types import positive_int
from invarlock_core.cli.output import print_json
from invarlock_core.errors import OutputError, UsageError
from invarlock_core.output_checks import check_output_location

__all__ = ["register"]



def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    from invarlock_core.scheduling.policy import POLICIES
    from invarlock_core.scheduling.suite_graph import SUITE_SHAPES

    schedule = subparsers.add_parser(
        "schedule", help="task graphs, the GPU scheduler and its simulator"
    )
    sub = schedule.add_subparsers(dest="schedule_command", metavar="ACTION", required=True)

    def shape_args(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--suite-shape",
            default="full",
            choices=sorted(SUITE_SHAPES),
            help="models and scenario counts",
        )
        parser.add_argument(
            "--gpu-memory",
            type=_positive_float,
            default=80.0,
            metavar="GB",
            help="memory per device",
        )
        parser.add_argument(
            "--batch-edits",
            choices=("auto", "true", "false"),
            default=None,
            help="batch or per-edit creation",
        )
        parser.add_argument(
            "--no-cleanup", action="store_true", help="keep edited models (no CLEANUP tasks)"
        )

    sim = sub.add_parser(
        "simulate", help="simulate a suite on virtual GPUs: makespan vs lower bound"
    )
    shape_args(sim)
    sim.add_argument(
        "--gpus", type=positive_int, default=8, metavar="N", help="number of virtual devices"
    )
    sim.add_argument("--policy", choices=(*POLICIES, "all"), default="small_first")
    sim.add_argument("--json", action="store_true", help="machine-readable output")
    sim.set_defaults(handler=_simulate)

    graph = sub.add_parser(
        "graph", help="write a suite's task graph (with its memory plan) as JSON"
    )
    shape_args(graph)
    graph.add_argument("--output", type=Path, help="file to write (default: stdout)")
    graph.set_defaults(handler=_graph)

    run = sub.add_parser("run", help="run a task graph in OUTPUT_DIR, or resume the queue there")
    run.add_argument("output_dir", type=Path, metavar="OUTPUT_DIR")
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("--graph", type=Path, help="task graph JSON to queue and run")
    source.add_argument("--resume", action="store_true", help="continue the queue in OUTPUT_DIR")
    run.add_argument(
        "--retry-failed", action="store_true", help="with --resume: run failed tasks again"
    )
    run.add_argument("--executor", default="local", help="registered executor (local, ray)")
    run.add_argument("--policy", choices=POLICIES, default="small_first")
    run.add_argument("--ray-address", help="Ray cluster address (ray executor)")
    run.add_argument("--json", action="store_true", help="print the run summary as JSON")
    run.set_defaults(handler=_run)

    status = sub.add_parser("status", help="show the queue of a run")
    status.add_argument("output_dir", type=Path, metavar="OUTPUT_DIR")
    status.add_argument("--tasks", action="store_true", help="list every task")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=_status)

    stop = sub.add_parser("stop", help="ask a run's workers to stop after their current task")
    stop.add_argument("output_dir", type=Path, metavar="OUTPUT_DIR")
    stop.set_defaults(handler=_stop)


def _build_graph(args: argparse.Namespace) -> Any:
    import attrs

    from invarlock_core.scheduling.knobs import SchedulingKnobs
    from invarlock_core.scheduling.memory import MemoryPlanner
    from invarlock_core.scheduling.suite_graph import build_suite_graph, suite_shape

    shape = suite_shape(args.suite_shape)
    counts = shape.counts
    if args.batch_edits is not None:
        counts = attrs.evolve(counts, batch_edits=args.batch_edits)
    if args.no_cleanup:
        counts = attrs.evolve(counts, cleanup=False)
    planner = MemoryPlanner(SchedulingKnobs.from_env(), device_memory_gb=args.gpu_memory)
    return build_suite_graph(shape, planner, counts=counts)


def _simulate(args: argparse.Namespace) -> int:
    from invarlock_core.scheduling.knobs import SchedulingKnobs
    from invarlock_core.scheduling.policy import POLICIES
    from invarlock_core.scheduling.simulator import simulate

    graph = _build_graph(args)
    fraction = SchedulingKnobs.from_env().cuda_memory_fraction
    names = POLICIES if args.policy == "all" else (args.policy,)
    results = [
        simulate(
            graph,
            devices=args.gpus,
            device_memory_gb=args.gpu_memory,
            policy=name,
            memory_fraction=fraction,
        )
        for name in names
    ]
    if args.json:
        rows = [dict(result.summary(), suite_shape=args.suite_shape) for result in results]
        print_json(rows[0] if len(rows) == 1 else rows)
        return 0
    print(f"suite {args.suite_shape}: {len(graph)} tasks on {args.gpus} x {args.gpu_memory:g} GB")
    print(f"{'policy':<12} {'makespan':>10} {'lower bound':>12} {'ratio':>7} {'utilisation':>12}")
    for result in results:
        print(
            f"{result.policy:<12} {_hours(result.makespan_seconds):>10} {_hours(result.lower_bound_seconds):>12}"
            f" {result.ratio:>7.3f} {result.utilisation:>11.1%}"
        )
    return 0


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


def _graph(args: argparse.Namespace) -> int:
    if args.output is not None:
        check_output_location(args.output, what="--output", directory=False)
    graph = _build_graph(args)
    if args.output is not None:
        try:
            graph.save(args.output)
        except OSError as exc:
            raise OutputError(f"--output {args.output}: {exc.strerror or exc}") from None
        print(f"wrote {len(graph)} tasks to {args.output}")
    else:
        print_json(graph.to_json())
    return 0


def _run(args: argparse.Namespace) -> int:
    from invarlock_core.scheduling.run import run_graph
    from invarlock_core.scheduling.tasks import TaskGraph

    if args.retry_failed and not args.resume:
        raise UsageError("--retry-failed only applies with --resume")
    check_output_location(args.output_dir, what="OUTPUT_DIR")
    graph = TaskGraph.load(args.graph) if args.graph is not None else None
    settings = {"address": args.ray_address} if args.ray_address else {}
    summary = run_graph(
        args.output_dir,
        graph,
        executor=args.executor,
        policy=args.policy,
        resume=args.resume,
        retry_failed=args.retry_failed,
        settings=settings,
    )
    if args.json:
        print_json(summary.to_json())
    else:
        states = ", ".join(
            f"{count} {state}" for state, count in sorted(summary.states.items()) if count
        )
        print(
            f"{summary.total} tasks: {states} ({summary.skipped} skipped, {summary.wall_seconds:.1f} s)"
        )
        if summary.reason:
            print(f"stopped: {summary.reason}")
    return summary.exit_code


def _status(args: argparse.Namespace) -> int:
    from invarlock_core.scheduling.local import active_runner
    from invarlock_core.scheduling.store import TaskQueue
    from invarlock_core.serialization import unstructure

    with TaskQueue(args.output_dir) as queue:
        progress = queue.progress()
        records = queue.records()
    runner = active_runner(args.output_dir)
    if args.json:
        data = progress.to_json()
        data["runner_pid"] = runner
        if args.tasks:
            data["tasks"] = [unstructure(record) for record in records]
        print_json(data)
        return 0
    states = ", ".join(
        f"{count} {state}" for state, count in sorted(progress.states.items()) if count
    )
    print(f"{args.output_dir}: {progress.total} tasks ({states}); policy {progress.policy}")
    if runner is not None:
        print(f"  runner: running (pid {runner})")
    elif not progress.finished:
        print(
            f"  runner: not running; continue with: invarlock schedule run {args.output_dir} --resume"
        )
    for model, counts in sorted(progress.models.items()):
        done = counts.get("completed", 0)
        total = sum(counts.values())
        extra = f", {counts['failed']} failed" if counts.get("failed") else ""
        running = f", {counts['running']} running" if counts.get("running") else ""
        print(f"  {model or '(no model)'}: {done}/{total} completed{running}{extra}")
    for worker in progress.workers:
        task = f" on {worker.task_id}" if worker.task_id else ""
        print(
            f"  worker {worker.id} [{worker.device}] {worker.state}{task}: {worker.completed} done, {worker.failures} failed"
        )
    if args.tasks:
        for record in records:
            devices = ",".join(record.devices)
            note = f"  {record.failure_class}: {record.error}" if record.error else ""
            print(f"  {record.state:<9} {record.id} attempts={record.attempts} [{devices}]{note}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    from invarlock_core.atomic import atomic_write_text
    from invarlock_core.scheduling.store import TaskQueue
    from invarlock_core.scheduling.worker import SHUTDOWN_FILE

    if not TaskQueue.exists(args.output_dir):
        raise UsageError(f"{args.output_dir} has no scheduler queue")
    atomic_write_text(args.output_dir / SHUTDOWN_FILE, "stop requested\n")
    print(f"asked the workers of {args.output_dir} to stop after their current task")
    return 0
