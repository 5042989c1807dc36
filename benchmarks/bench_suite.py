"""Benchmark the tiny evidence-pack suite: wall time against its lower bound, and start-up's share.

Runs ``invarlock pack run --suite tiny`` (optionally limited to some scenarios) in a fresh output
directory, with warm task start (the default: each task is a fork of a worker that imported torch
and transformers once) and, with ``--compare``, again with every task in a fresh interpreter
(``PACK_WARM_START=0``). For each run it prints:

* ``wall``: seconds from the first task's start to the last task's end (the queue's records);
* ``lower bound``: the sum of the tasks' in-process compute seconds (``logs/task_seconds``,
  measured inside each task around its library call) divided by the number of slots;
* ``ratio`` = wall / lower bound (target <= 1.3 on 2 CPU slots);
* ``start-up share``: the part of the tasks' summed wall time spent outside the library call
  (interpreter start, imports, model-class imports, scheduling), as a fraction.

Run: ``python benchmarks/bench_suite.py [--scenario-ids a,b] [--compare]``. Time it on a quiet
machine: on a busy one the figures say nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def run_suite(out: Path, scenario_ids: str | None, *, warm: bool) -> int:
    command = [sys.executable, "-m", "invarlock_core.cli", "pack", "run", "--suite", "tiny"]
    command += ["--out", str(out), "--no-pack"]
    if scenario_ids:
        command += ["--scenario-ids", scenario_ids]
    env = {**os.environ, "PACK_WARM_START": "1" if warm else "0", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        print(done.stderr[-2000:], file=sys.stderr)
    return done.returncode


def measure(out: Path) -> dict[str, Any]:
    with sqlite3.connect(out / "state" / "queue.sqlite3") as db:
        rows = db.execute(
            "select id, started_at, finished_at from tasks where state = 'completed'"
        ).fetchall()
        slots = db.execute("select count(*) from devices").fetchone()[0]
    inside = {
        path.stem: json.loads(path.read_text())["seconds"]
        for path in (out / "logs" / "task_seconds").glob("*.json")
    }
    wall = max(r[2] for r in rows) - min(r[1] for r in rows)
    task_wall = sum(r[2] - r[1] for r in rows)
    compute = sum(inside.values())
    bound = compute / slots
    return {
        "tasks": len(rows),
        "slots": slots,
        "wall_s": round(wall, 2),
        "lower_bound_s": round(bound, 2),
        "ratio": round(wall / bound, 3) if bound else None,
        "startup_share": round(1.0 - compute / task_wall, 3) if task_wall else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario-ids", help="limit the suite to these scenarios")
    parser.add_argument("--compare", action="store_true", help="also run with cold task start")
    args = parser.parse_args()
    modes = [("warm", True)] + ([("cold", False)] if args.compare else [])
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as tmp:
        for name, warm in modes:
            out = Path(tmp) / name
            code = run_suite(out, args.scenario_ids, warm=warm)
            figures = measure(out)
            print(
                f"{name:5s} start: {figures['tasks']} tasks on {figures['slots']} slots, "
                f"wall {figures['wall_s']} s, lower bound {figures['lower_bound_s']} s, "
                f"ratio {figures['ratio']}, start-up share {figures['startup_share']} (exit {code})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
