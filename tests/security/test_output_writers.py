"""Output writers refuse special files and unwritable places up front; arguments are checked first.

Real CLI processes throughout (#20 items 8, 9, 11, 12, 13): a FIFO at an output path is never
replaced by a regular file; an output under ``/proc`` (unwritable even for root) is one line and
exit 2 before any work; ``calibrate --name`` cannot leave ``--out``; ``veriscope run`` checks
``--override`` types and ``--max_iters`` before launching; secrets passed as runner arguments
never reach ``runner_output.log``; ``pack verify --workers -3`` is a usage error.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from gate_helpers import make_capsule, veriscope_cmd

pytestmark = pytest.mark.slow  # real subprocesses

LIGHT = {"INVARLOCK_LOAD_PLUGINS": "invarlock_packs.commands"}
UNWRITABLE = "/proc/invarlock-security-test"


def _veriscope(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(veriscope_cmd(*args), capture_output=True, text=True, check=False)


def _one_line_exit_2(done: Any) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert len([line for line in done.stderr.splitlines() if line.startswith("error:")]) == 1


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def _still_fifo(path: Path) -> bool:
    return stat.S_ISFIFO(os.lstat(path).st_mode)


def test_pack_html_refuses_a_special_file_and_an_unwritable_place(
    sealed_pack: Path, fifo: Path, invarlock: Any
) -> None:
    done = invarlock("pack", "html", str(sealed_pack), "-o", str(fifo), env=LIGHT)
    _one_line_exit_2(done)
    assert "not a regular file" in done.stderr
    assert _still_fifo(fifo)
    _one_line_exit_2(
        invarlock("pack", "html", str(sealed_pack), "-o", f"{UNWRITABLE}.html", env=LIGHT)
    )


def test_pack_keygen_and_build_refuse_unwritable_places(
    inputs: dict[str, Any], invarlock: Any
) -> None:
    _one_line_exit_2(invarlock("pack", "keygen", f"{UNWRITABLE}.pem", env=LIGHT))
    done = invarlock(
        "pack", "build", f"{UNWRITABLE}/pack", "--final-verdict", str(inputs["final_verdict"]),
        "--report", str(inputs["reports"][0]), "--scenarios", str(inputs["scenarios"]),
        env=LIGHT,
    )  # fmt: skip
    _one_line_exit_2(done)
    assert "cannot write" in done.stderr


def test_veriscope_report_refuses_a_special_file_and_an_unwritable_place(
    tmp_path: Path, fifo: Path
) -> None:
    capsule = make_capsule(tmp_path / "capsule")
    done = _veriscope("report", str(capsule), "--output", str(fifo))
    _one_line_exit_2(done)
    assert _still_fifo(fifo)
    _one_line_exit_2(_veriscope("report", str(capsule), "--output", f"{UNWRITABLE}.md"))


def test_veriscope_override_and_calibrate_check_outputs_first(tmp_path: Path) -> None:
    capsule = make_capsule(tmp_path / "capsule")
    os.mkfifo(capsule / "manual_judgement.json")
    done = _veriscope("override", str(capsule), "--status", "pass", "--reason", "ok")
    _one_line_exit_2(done)
    assert _still_fifo(capsule / "manual_judgement.json")
    done = _veriscope("calibrate", "--control-dir", str(tmp_path / "none"),
                      "--injected-dir", str(tmp_path / "none"), "--out", f"{UNWRITABLE}.json")  # fmt: skip
    _one_line_exit_2(done)
    assert "cannot write" in done.stderr  # refused before the (missing) capsules are read


def test_veriscope_run_checks_outdir_overrides_and_iterations_before_launch(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    _one_line_exit_2(_veriscope("run", "gpt", "--outdir", UNWRITABLE))
    for runner_args in (["--override", "eps_sens=banana"], ["--override=policy=sometimes"],
                        ["--max_iters", "-5"], ["--max-iters=0"]):  # fmt: skip
        done = _veriscope("run", "gpt", "--outdir", str(out), "--", *runner_args)
        _one_line_exit_2(done)
        assert not out.exists()  # nothing launched, nothing written
    done = _veriscope("run", "gpt", "--outdir", str(out), "--", "--override", "eps_sens=banana")
    assert "eps_sens='banana' (expected float or null)" in done.stderr


def test_secrets_in_runner_arguments_never_reach_runner_output_log(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = _veriscope("run", "gpt", "--outdir", str(out), "--",
                      "--hf_token", "hf_S3cretTokenValue", "--api-key=sk-K3yValue42")  # fmt: skip
    assert done.returncode == 2  # the runner rejects the unknown flags: a user-code failure
    log = (out / "runner_output.log").read_text()
    assert "unrecognized arguments" in log  # the runner did echo its arguments
    assert "***REDACTED***" in log
    for secret in ("hf_S3cretTokenValue", "sk-K3yValue42"):
        for path in out.iterdir():
            if path.is_file():
                assert secret not in path.read_text(errors="replace"), path.name


def test_calibrate_name_cannot_escape_out(tmp_path: Path, invarlock: Any) -> None:
    for name in ("x/../../../y", "..", "a\\b", ".hidden"):
        done = invarlock("calibrate", "--baseline", str(tmp_path / "missing"),
                         "--out", str(tmp_path / "presets"), "--name", name)  # fmt: skip
        _one_line_exit_2(done)
        assert "--name must be a plain file-name component" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_pack_verify_workers_must_be_positive(sealed_pack: Path, invarlock: Any) -> None:
    done = invarlock("pack", "verify", str(sealed_pack), "--workers", "-3", env=LIGHT)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
