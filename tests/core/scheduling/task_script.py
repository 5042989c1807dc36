"""A real task program for the scheduler tests: ``python task_script.py MODE NAME [ARG]``.

Every mode that succeeds creates ``markers/NAME`` with O_EXCL, so a second successful run of the
same task would fail loudly. ``runs.log`` records every start.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

out = Path(os.environ["INVARLOCK_OUTPUT_DIR"])
mode, name = sys.argv[1], sys.argv[2]
attempt = int(os.environ["INVARLOCK_TASK_ATTEMPT"])


def started() -> None:
    (out / "started").mkdir(exist_ok=True)
    # Published atomically: a test that sees the file may read the pid at once.
    final = out / "started" / f"{name}.{attempt}"
    partial = final.with_name(f".{final.name}.tmp")
    partial.write_text(str(os.getpid()))
    os.replace(partial, final)
    with open(out / "runs.log", "a") as log:
        log.write(f"{name} {attempt}\n")


def mark() -> None:
    (out / "markers").mkdir(exist_ok=True)
    fd = os.open(out / "markers" / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    info = f"{attempt} {os.environ.get('CUDA_VISIBLE_DEVICES')} {os.environ.get('INVARLOCK_EVAL_BATCH')}"
    os.write(fd, info.encode())
    os.close(fd)


def wait_for(path: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            sys.exit(9)
        time.sleep(0.02)


started()
if mode == "mark":
    mark()
elif mode == "gate":
    wait_for(out / "release", 120)
    mark()
elif mode == "hold-first":
    if attempt == 1:
        wait_for(out / "never", 120)
    mark()
elif mode == "oom":
    if int(os.environ.get("INVARLOCK_EVAL_BATCH", "32")) > int(sys.argv[3]):
        print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", flush=True)
        sys.exit(1)
    mark()
elif mode == "crash":
    print("RuntimeError: something broke", flush=True)
    sys.exit(1)
elif mode == "permanent":
    print("ModuleNotFoundError: No module named 'not_installed_anywhere'", flush=True)
    sys.exit(1)
elif mode == "hang":
    time.sleep(3600)
else:
    sys.exit(f"unknown mode {mode}")
