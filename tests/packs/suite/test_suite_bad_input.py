"""Bad input to ``invarlock pack run`` exits 2 with one line and writes no run and no pack."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def pack_run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invarlock_core.cli", "pack", "run", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false", **(env or {})},
        timeout=120,
        check=False,
    )


def assert_one_line_exit_2(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (["--suite", "nope"], {}, "unknown suite 'nope'"),
        (
            ["--suite", "tiny", "--scenario-ids", "prune_clean,bogus"],
            {},
            "unknown scenario id 'bogus'",
        ),
        (["--suite", "tiny", "--model", "/nonexistent/model"], {}, "/nonexistent/model"),
        (["--suite", "tiny"], {"MIN_FREE_DISK_GB": "1e12"}, "not enough disk space"),
        (["--suite", "tiny"], {"CLEAN_EDIT_RUNS": "many"}, "CLEAN_EDIT_RUNS='many'"),
        (["--suite", "subset"], {}, "not in the Hugging Face cache"),
    ],
)
def test_bad_input_exits_2(
    tmp_path: Path, args: list[str], env: dict[str, str], fragment: str
) -> None:
    out = tmp_path / "run"
    result = pack_run(*args, "--out", str(out), env={"HF_HOME": str(tmp_path / "hf"), **env})
    assert_one_line_exit_2(result, fragment)
    assert not out.exists()


def test_existing_non_run_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    result = pack_run("--suite", "tiny", "--out", str(tmp_path))
    assert_one_line_exit_2(result, "is not empty (not a suite run)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious.txt"]


def test_unreadable_tuned_params_are_refused(tmp_path: Path) -> None:
    tuned = tmp_path / "tuned.json"
    tuned.write_text('{"schema_version": 1, "edits": ')
    out = tmp_path / "run"
    result = pack_run(
        "--suite", "tiny", "--out", str(out), env={"PACK_TUNED_EDIT_PARAMS_FILE": str(tuned)}
    )
    assert_one_line_exit_2(result, "tuned edit params file")
    assert not out.exists()


def test_resume_without_a_run_is_refused(tmp_path: Path) -> None:
    result = pack_run("--out", str(tmp_path / "none"), "--resume")
    assert_one_line_exit_2(result, "holds no suite run to resume")
