"""Reliability of a real suite run: kill -9 and --resume, retries per failure class, OOM, hangs.

Every run here is a real ``invarlock pack run`` subprocess on one tiny GPT-2 with three scenarios
(a clean edit, a required-fail stress edit and a must-detect error injection). Nothing sleeps to
wait: the kill happens when the run's own progress line (read from its stderr pipe) says a task
finished, and fault drills (``INVARLOCK_SUITE_FAULTS``) make chosen tasks fail on attempt 1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from invarlock_core.scheduling import TaskQueue

SLUG = "tiny-gpt2"
SCENARIOS = "prune_clean,prune_50_stress,nan_injection"
SMALL = {
    "DRIFT_CALIBRATION_RUNS": "1",
    "CLEAN_EDIT_RUNS": "1",
    "STRESS_EDIT_RUNS": "1",
    "RETRY_BACKOFF_BASE": "0",
    "RETRY_JITTER": "0",
    "TOKENIZERS_PARALLELISM": "false",
}
pytestmark = pytest.mark.slow


def command(out: Path, *extra: str) -> list[str]:
    base = [sys.executable, "-m", "invarlock_core.cli", "pack", "run", "--out", str(out)]
    if "--resume" in extra:
        return [*base, *extra]
    return [*base, "--suite", "tiny", "--model", "tiny:gpt2", "--scenario-ids", SCENARIOS, *extra]


def run(
    out: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(out, *extra),
        capture_output=True,
        text=True,
        env={**os.environ, **SMALL, **(env or {})},
        timeout=600,
        check=False,
    )


def outcome(out: Path) -> dict[str, Any]:
    """The final verdict, and each scenario report's verdict and primary-metric ratio."""
    verdict = json.loads((out / "reports" / "final_verdict.json").read_text())
    reports = {}
    for path in sorted((out / SLUG / "reports").rglob("evaluation.report.json")):
        report = json.loads(path.read_text())
        key = str(path.parent.relative_to(out / SLUG / "reports"))
        reports[key] = (report["verdict"], report["primary_metric"].get("ratio"))
    return {"verdict": verdict["verdict"], "criteria": verdict.get("criteria"), "reports": reports}


def records(out: Path) -> dict[str, Any]:
    with TaskQueue(out) as queue:
        return {r.id: r for r in queue.records()}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("reliability") / "clean-run"
    result = run(out)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    return {"code": result.returncode, **outcome(out)}


def test_kill_9_mid_suite_then_resume_completes_every_task_once(
    tmp_path: Path, uninterrupted: dict[str, Any]
) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(
        command(out),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **SMALL},
        start_new_session=True,
    )
    assert proc.stderr is not None
    finished_before: list[str] = []
    for line in proc.stderr:  # blocking reads of the run's own progress lines: no sleeps
        if "] completed " in line:
            finished_before.append(line.split("] completed ")[1].split(" ")[0])
        if f"{SLUG}.GENERATE_PRESET" in finished_before:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    before = records(out)
    done_at = {tid: before[tid].finished_at for tid in finished_before}
    assert any(r.state != "completed" for r in before.values())  # really mid-suite

    resumed = run(out, "--resume")
    assert resumed.returncode == uninterrupted["code"], resumed.stderr[-3000:]
    after = records(out)
    assert all(r.state == "completed" for r in after.values())
    for tid, finished in done_at.items():  # finished work was not redone
        assert after[tid].finished_at == finished
    assert outcome(out) == {k: v for k, v in uninterrupted.items() if k != "code"}
    assert (out / "evidence_pack" / "manifest.json").is_file()


def test_failures_are_retried_per_class_and_oom_halves_batch_and_seq_len(
    tmp_path: Path, uninterrupted: dict[str, Any]
) -> None:
    out = tmp_path / "run"
    faults = {
        f"{SLUG}.CREATE_EDIT.prune_clean": "crash",
        f"{SLUG}.EVALUATE_EDIT.prune_clean.run_1": "oom",
        f"{SLUG}.EVALUATE_ERROR.nan_injection": "hang",
    }
    env = {
        "INVARLOCK_SUITE_FAULTS": ",".join(f"{k}={v}" for k, v in faults.items()),
        "TASK_TIMEOUT_EVALUATE_ERROR": "30",
    }
    result = run(out, env=env)
    assert result.returncode == uninterrupted["code"], result.stderr[-3000:]
    seen = records(out)
    crash = seen[f"{SLUG}.CREATE_EDIT.prune_clean"]
    assert (crash.state, crash.attempts, crash.failures) == ("completed", 2, 1)
    oom = seen[f"{SLUG}.EVALUATE_EDIT.prune_clean.run_1"]
    assert (oom.state, oom.failures, oom.batch_size, oom.seq_len) == ("completed", 1, 16, 256)
    hung = seen[f"{SLUG}.EVALUATE_ERROR.nan_injection"]
    assert (hung.state, hung.failures) == ("completed", 1)
    log = (out / "logs" / "tasks" / f"{SLUG}.EVALUATE_ERROR.nan_injection.log").read_text()
    assert "timed out after 30 s: process group killed" in log
    # the retried run reaches the same results as the run without faults
    assert outcome(out) == {k: v for k, v in uninterrupted.items() if k != "code"}


def test_a_permanent_failure_is_not_retried_and_fails_the_verdict(tmp_path: Path) -> None:
    out = tmp_path / "run"
    task = f"{SLUG}.CREATE_ERROR.nan_injection"
    result = run(out, "--no-pack", env={"INVARLOCK_SUITE_FAULTS": f"{task}=permanent"})
    assert result.returncode == 1, result.stderr[-3000:]
    seen = records(out)
    assert (seen[task].state, seen[task].attempts, seen[task].failure_class) == (
        "failed",
        1,
        "permanent",
    )
    assert json.loads((out / "reports" / "final_verdict.json").read_text())["verdict"] == "FAIL"
    assert not (out / "evidence_pack").exists()
