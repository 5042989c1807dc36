"""Build and verify run in a real interpreter where torch and transformers cannot be imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow  # real subprocesses

BLOCKER = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "transformers"}:
            raise ImportError(f"{name} is blocked in this test")
        return None
sys.meta_path.insert(0, _Block())
"""

SCRIPT = (
    BLOCKER
    + """
import json, time
from pathlib import Path
args = json.loads(sys.argv[1])
from invarlock_packs import build_pack, verify_pack, inspect_pack, export_pack_html
from invarlock_core.cli import main
built = build_pack(Path(args["out"]), final_verdict=args["final_verdict"], reports=args["reports"],
                   signing_key=args["key"], metadata={"scenarios": args["scenarios"]})
start = time.perf_counter()
result = verify_pack(built.path, strict=True, expected_fingerprint=args["fingerprint"])
seconds = time.perf_counter() - start
inspect_pack(built.path)
export_pack_html(built.path, Path(args["out"] + ".html"))
code = main(["pack", "verify", str(built.path), "--strict", "--expected-fingerprint", args["fingerprint"]])
heavy = sorted(m for m in ("torch", "transformers") if m in sys.modules)
print(json.dumps({"ok": result.ok, "problems": result.problems, "cli": code, "heavy": heavy,
                  "seconds": seconds, "reports": result.reports_checked}))
"""
)


def test_build_and_verify_with_torch_blocked(
    tmp_path: Path, inputs: dict[str, Any], key: Any
) -> None:
    args = {
        "out": str(tmp_path / "pack"),
        "final_verdict": str(inputs["final_verdict"]),
        "reports": [str(r) for r in inputs["reports"]],
        "key": str(key.private_key_path),
        "scenarios": str(inputs["scenarios"]),
        "fingerprint": key.fingerprint,
    }
    # A reviewer's machine has only invarlock-core and invarlock-packs: load just our plugin.
    env = {**os.environ, "INVARLOCK_LOAD_PLUGINS": "invarlock_packs.commands"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["ok"], outcome["problems"]
    assert outcome["cli"] == 0
    assert outcome["heavy"] == []
    assert outcome["reports"] == 2


def test_blocker_really_blocks() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BLOCKER + "import torch"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "blocked" in done.stderr
