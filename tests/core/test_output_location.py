"""Unwritable outputs are refused before any work, with one line and exit 2.

Real subprocesses of every command that writes an output directory or file. ``/proc`` refuses new
entries even to root (the tests may run as root, for whom permission bits always say yes), and a
path under a regular file is not a directory at all.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from invarlock_core.errors import OutputError
from invarlock_core.output_checks import check_output_location

UNWRITABLE = Path("/proc/invarlock-cannot-write-here")


def test_a_writable_location_passes_and_leaves_nothing(tmp_path: Path) -> None:
    check_output_location(tmp_path / "new" / "deeper", what="--out")
    existing = tmp_path / "existing"
    existing.mkdir()
    check_output_location(existing, what="--out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]
    assert list(existing.iterdir()) == []


def test_unwritable_locations_are_one_line_output_errors(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="cannot write under /proc") as caught:
        check_output_location(UNWRITABLE / "out", what="--out")
    assert "\n" not in str(caught.value)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match=r"[Nn]ot a directory"):
        check_output_location(blocker / "out", what="--out")
    assert OutputError("x").exit_code == 2


def _one_line_exit_2(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [
        ("evaluate", "--subject", "{baseline}", "--out", "{out}", "--device", "cpu"),
        ("edit", "apply", "--edit", "quant_rtn", "--out", "{out}"),
        ("calibrate", "--runs", "2", "--out", "{out}", "--device", "cpu"),
    ],
    ids=["evaluate", "edit-apply", "calibrate"],
)
def test_model_commands_refuse_an_unwritable_out_before_loading(
    invarlock: Callable[..., subprocess.CompletedProcess[str]],
    tiny_model_dir: Callable[[str], Path],
    command: tuple[str, ...],
) -> None:
    baseline = tiny_model_dir("gpt2")
    args = [a.format(baseline=baseline, out=UNWRITABLE / "out") for a in command]
    result = invarlock(*args[: 2 if args[0] == "edit" else 1], "--baseline", str(baseline), *args[2 if args[0] == "edit" else 1 :])
    assert "cannot write under /proc" in _one_line_exit_2(result)


def test_schedule_refuses_an_unwritable_output(
    invarlock: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    graph = tmp_path / "graph.json"
    assert "cannot write under /proc" in _one_line_exit_2(invarlock("schedule", "graph", "--output", str(UNWRITABLE / "g.json")))
    assert invarlock("schedule", "graph", "--suite-shape", "subset", "--output", str(graph)).returncode == 0
    result = invarlock("schedule", "run", str(UNWRITABLE / "run"), "--graph", str(graph))
    assert "cannot write under /proc" in _one_line_exit_2(result)
