"""The process-safe ``veriscope run`` wrapper, with real subprocesses and real signals."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from gate_helpers import veriscope_cmd

from veriscope_gate.capsule import RUN_CONFIG, RUNNER_LOG, SUMMARY
from veriscope_gate.validate import validate_capsule

GPT_ARGS = ["--gate-preset", "cpu_smoke"]


def _summary(outdir: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((outdir / SUMMARY).read_text())
    return data


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    outdir = tmp_path_factory.mktemp("gpt") / "run"
    proc = subprocess.run(veriscope_cmd("run", "gpt", *GPT_ARGS, "--outdir", str(outdir), "--",
                                        "--max_iters", "240", "--log_interval", "80"),
                          capture_output=True, text=True, timeout=300, check=False)
    return outdir, proc


@pytest.mark.slow
def test_run_gpt_end_to_end(gpt_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    outdir, proc = gpt_run
    assert proc.returncode == 0, proc.stderr
    assert "veriscope-gate: iter=240 decision=" in proc.stdout
    summary = _summary(outdir)
    assert summary["run_status"] == "success"
    assert summary["wrapper_exit_code"] == 0
    assert summary["runner_exit_code"] == 0
    assert summary["partial"] is False
    assert summary["counts"]["evaluated"] >= 1  # type: ignore[index]
    cfg = json.loads((outdir / RUN_CONFIG).read_text())
    assert Path(cfg["run"]["outdir"]).is_absolute()
    assert cfg["run"]["run_id"] == summary["run_id"]
    assert "veriscope-gate: iter=240" in (outdir / RUNNER_LOG).read_text()
    assert validate_capsule(outdir, require_governance=True, strict_governance=True, strict_identity=True).ok


@pytest.mark.slow
def test_sentinels_refuse_reuse_and_force_uses_a_subdirectory(
    gpt_run: tuple[Path, subprocess.CompletedProcess[str]]
) -> None:
    outdir, _ = gpt_run
    before = {p.name: p.stat().st_mtime_ns for p in outdir.iterdir()}
    refused = subprocess.run(veriscope_cmd("run", "gpt", *GPT_ARGS, "--outdir", str(outdir), "--",
                                           "--max_iters", "10"),
                             capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode == 2
    assert refused.stderr.strip().startswith("error:")
    assert "--force" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    forced = subprocess.run(veriscope_cmd("run", "gpt", *GPT_ARGS, "--outdir", str(outdir), "--force",
                                          "--", "--max_iters", "10"),
                            capture_output=True, text=True, timeout=120, check=False)
    assert forced.returncode == 0, forced.stderr
    subdirs = [p for p in outdir.iterdir() if p.is_dir() and p.name.startswith("run-")]
    assert len(subdirs) == 1
    assert (subdirs[0] / SUMMARY).exists()
    assert {p.name: p.stat().st_mtime_ns for p in outdir.iterdir() if p.is_file()} == {
        k: v for k, v in before.items() if (outdir / k).is_file()}


def _start_and_wait_for(cmd: list[str], marker: str, timeout: float) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            proc.kill()
            pytest.fail(f"marker {marker!r} not seen within {timeout} s; output: {''.join(seen)[-2000:]}")
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            continue
        if line is None:
            pytest.fail(f"process ended before {marker!r}: {''.join(seen)[-2000:]}")
        seen.append(line)
        if marker in line:
            break

    def drain() -> None:
        while (line := lines.get()) is not None:
            seen.append(line)

    threading.Thread(target=drain, daemon=True).start()
    return proc, seen


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_is_forwarded_and_a_partial_summary_written(tmp_path: Path, sig: signal.Signals) -> None:
    outdir = tmp_path / "sig"
    cmd = veriscope_cmd("run", "gpt", *GPT_ARGS, "--outdir", str(outdir), "--", "--max_iters", "1000000")
    # the gate line proves live streaming: the child is still running when we read it
    proc, seen = _start_and_wait_for(cmd, "veriscope-gate: iter=40 ", timeout=180)
    proc.send_signal(sig)  # to the wrapper only: it must forward to the runner's process group
    rc = proc.wait(timeout=120)
    assert rc == 2, "".join(seen)[-2000:]
    summary = _summary(outdir)
    assert summary["partial"] is True
    assert summary["runner_signal"] == sig.name
    assert summary["run_status"] == "user_code_failure"
    assert summary["runner_exit_code"] == 128 + sig.value
    assert validate_capsule(outdir).ok


@pytest.mark.slow
def test_runner_crash_is_exit_2_with_partial_capsule(tmp_path: Path) -> None:
    outdir = tmp_path / "crash"
    proc = subprocess.run(veriscope_cmd("run", "gpt", *GPT_ARGS, "--outdir", str(outdir), "--",
                                        "--max_iters", "200", "--fail-at", "50"),
                          capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 2
    assert "injected runner failure" in proc.stderr
    summary = _summary(outdir)
    assert summary["run_status"] == "user_code_failure"
    assert summary["partial"] is True
    assert validate_capsule(outdir).ok


FAKE_RUNNER = """
import json, sys
print("fake runner argv:", json.dumps(sys.argv[1:]), flush=True)
sys.exit(int(sys.argv[sys.argv.index("--exit") + 1]))
"""


@pytest.mark.parametrize(("exit_code", "expected", "status"), [(0, 3, "veriscope_failure"), (5, 2, "user_code_failure")])
def test_hf_runner_command_override(tmp_path: Path, exit_code: int, expected: int, status: str) -> None:
    script = tmp_path / "fake_runner.py"
    script.write_text(FAKE_RUNNER)
    outdir = tmp_path / "hf"
    env = {**os.environ, "VERISCOPE_HF_RUNNER_CMD": f"{sys.executable} {script}"}
    proc = subprocess.run(veriscope_cmd("run", "hf", "--outdir", str(outdir), "--", "--exit", str(exit_code)),
                          capture_output=True, text=True, timeout=120, check=False, env=env)
    assert proc.returncode == expected, proc.stderr
    argv = json.loads(proc.stdout.split("fake runner argv:", 1)[1].splitlines()[0])
    assert "--outdir" in argv
    assert "--run_id" in argv
    assert "--gate-preset" in argv
    summary = _summary(outdir)
    assert summary["run_status"] == status
    assert summary["partial"] is True
    assert summary["gate_controls_hash"] is None
    assert validate_capsule(outdir).ok


def test_unknown_runner_and_missing_outdir(tmp_path: Path) -> None:
    proc = subprocess.run(veriscope_cmd("run", "cifar", "--outdir", str(tmp_path)), capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr
    proc = subprocess.run(veriscope_cmd("run", "gpt"), capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "--outdir" in proc.stderr
