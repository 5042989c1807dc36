"""``pack build --overwrite`` never deletes its inputs and never loses the pack it replaces.

Real ``invarlock pack build`` processes: refusals for a destination that holds the inputs or is
not a pack, SIGKILL at arbitrary moments of a rebuild loop (the destination always verifies),
and recovery of what a killed build left behind (the two-step fallback's ``.NAME.old-*``,
staging directories of dead processes).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from invarlock_core.directory_swap import recover_leftovers
from invarlock_packs import verify_pack

pytestmark = pytest.mark.slow  # real subprocesses

LIGHT = {"INVARLOCK_LOAD_PLUGINS": "invarlock_packs.commands"}


def _copy_inputs(inputs: dict[str, Any], root: Path) -> dict[str, Path]:
    shutil.copytree(inputs["root"] / "runs", root / "runs")
    shutil.copyfile(inputs["final_verdict"], root / "final_verdict.json")
    shutil.copyfile(inputs["scenarios"], root / "scenarios.json")
    return {
        "verdict": root / "final_verdict.json",
        "scenarios": root / "scenarios.json",
        "clean": root / "runs/gpt2/noop/run1/evaluation.report.json",
    }


def _build_args(out: Path, copied: dict[str, Path], *extra: str) -> list[str]:
    return [
        "pack", "build", str(out), "--final-verdict", str(copied["verdict"]),
        "--report", str(copied["clean"]), "--scenarios", str(copied["scenarios"]), "--skip-html", *extra,
    ]  # fmt: skip


def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def test_overwrite_refuses_a_destination_that_holds_the_inputs(
    tmp_path: Path, inputs: dict[str, Any], invarlock: Any
) -> None:
    copied = _copy_inputs(inputs, tmp_path / "work")
    pack = tmp_path / "pack"
    assert invarlock(*_build_args(pack, copied), env=LIGHT).returncode == 0
    # Rebuild a pack from its own reports, into itself: the swap would delete the inputs.
    inner = {
        "verdict": pack / "results/final_verdict.json",
        "scenarios": pack / "metadata/scenarios.json",
        "clean": next(pack.glob("reports/**/evaluation.report.json")),
    }
    (pack / "notes.txt").write_text("unrelated\n")
    (tmp_path / "work/notes.txt").write_text("unrelated\n")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for out, sources in ((pack, inner), (inner["clean"].parent / "sub", inner),
                         (tmp_path / "work", copied)):  # fmt: skip
        done = invarlock(*_build_args(out, sources, "--overwrite"), env=LIGHT)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        assert "input" in done.stderr or "not an evidence pack" in done.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_overwrite_refuses_a_directory_that_is_not_a_pack(
    tmp_path: Path, inputs: dict[str, Any], invarlock: Any
) -> None:
    copied = _copy_inputs(inputs, tmp_path / "work")
    victim = tmp_path / "home"
    victim.mkdir()
    (victim / "thesis.tex").write_text("years of work\n")
    done = invarlock(*_build_args(victim, copied, "--overwrite"), env=LIGHT)
    assert done.returncode == 2
    assert "not an evidence pack" in done.stderr
    assert (victim / "thesis.tex").read_text() == "years of work\n"
    first = invarlock(*_build_args(tmp_path / "pack", copied), env=LIGHT)
    assert first.returncode == 0, first.stderr
    again = invarlock(*_build_args(tmp_path / "pack", copied, "--overwrite"), env=LIGHT)
    assert again.returncode == 0, again.stderr


_REBUILD_LOOP = """
import sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from invarlock_packs import build_pack
key = Ed25519PrivateKey.generate()
out, verdict, report, scenarios = sys.argv[1:5]
for number in range(1000):
    build_pack(out, final_verdict=verdict, reports=[report], metadata={"scenarios": scenarios},
               signing_key=key, html=False, overwrite=True)
    print(number, flush=True)
"""


@pytest.mark.parametrize("builds_before_kill", [1, 2, 3])
def test_sigkill_during_rebuilds_never_loses_the_pack(
    tmp_path: Path, inputs: dict[str, Any], invarlock: Any, builds_before_kill: int
) -> None:
    copied = _copy_inputs(inputs, tmp_path / "work")
    out = tmp_path / "pack"
    assert invarlock(*_build_args(out, copied), env=LIGHT).returncode == 0
    loop = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _REBUILD_LOOP,
            str(out),
            str(copied["verdict"]),
            str(copied["clean"]),
            str(copied["scenarios"]),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert loop.stdout is not None
    for _ in range(builds_before_kill):
        assert loop.stdout.readline()
    os.kill(loop.pid, signal.SIGKILL)  # somewhere inside the next build
    loop.wait()
    result = verify_pack(out, report_assurance="off")
    assert result.ok, result.problems
    done = invarlock(*_build_args(out, copied, "--overwrite"), env=LIGHT)
    assert done.returncode == 0, done.stderr
    assert _leftovers(tmp_path, "pack") == []


def test_leftovers_of_a_killed_two_step_swap_are_recovered(
    tmp_path: Path, sealed_pack: Path
) -> None:
    out = tmp_path / "pack"
    # The state a kill between the fallback's two renames leaves: the old pack moved aside,
    # nothing at OUT yet, and the dead writer's staging directory.
    trash = tmp_path / ".pack.old-x1y2"
    trash.mkdir()
    shutil.copytree(sealed_pack, trash / "old")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    (tmp_path / f".pack.staging-{dead.stdout.strip()}-abc").mkdir()
    (tmp_path / ".pack.staging-legacy").mkdir()
    live = tmp_path / f".pack.staging-{os.getpid()}-mine"
    live.mkdir()
    done = recover_leftovers(out)
    assert f"restored {out} from .pack.old-x1y2" in done
    assert verify_pack(out).ok
    assert _leftovers(tmp_path, "pack") == [live.name]  # a live writer's stage is left alone
    # With OUT present, an ``.old-*`` directory is the remains of a completed swap: removed.
    shutil.copytree(sealed_pack, trash / "old")
    recover_leftovers(out)
    assert not trash.exists()
    assert verify_pack(out).ok


def test_fallback_swap_without_rename_exchange(
    tmp_path: Path, sealed_pack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from invarlock_core import directory_swap

    monkeypatch.setattr(directory_swap, "exchange_paths", lambda a, b: False)
    out = Path(shutil.copytree(sealed_pack, tmp_path / "pack"))
    stage = tmp_path / "new"
    stage.mkdir()
    (stage / "marker").write_text("new\n")
    directory_swap.publish_directory(stage, out)
    assert (out / "marker").read_text() == "new\n"
    assert _leftovers(tmp_path, "pack") == []
