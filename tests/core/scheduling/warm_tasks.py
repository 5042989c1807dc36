"""Entry points for the warm-start tests (imported by the worker when preloaded, else by the task)."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

IMPORTED_IN = os.getpid()


def record(params: dict[str, Any]) -> int:
    out = (
        Path(os.environ["INVARLOCK_OUTPUT_DIR"])
        / "markers"
        / f"{os.environ['INVARLOCK_TASK_ID']}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    facts = {
        "pid": os.getpid(),
        "imported_in": IMPORTED_IN,
        "session_leader": os.getsid(0) == os.getpid(),
        "cwd": os.getcwd(),
        "marker_env": os.environ.get("WARM_TEST_MARKER"),
        "params": params,
    }
    out.write_text(json.dumps(facts))
    print(f"recorded {os.environ['INVARLOCK_TASK_ID']}", flush=True)
    return 0


def fail(params: dict[str, Any]) -> int:
    print("RuntimeError: warm task failed on purpose", file=sys.stderr, flush=True)
    return int(params.get("code", 3))


def hang(params: dict[str, Any]) -> int:
    signal.pause()
    return 0
