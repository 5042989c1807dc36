"""An evaluate output directory is one set: published by a swap, bound together by digests.

* a publication killed at any step (a real process ending with ``os._exit`` between two file
  system operations) leaves the old set or the new one, never a mix, and never loses a file that
  is not part of the set; the next publication repairs what the kill left;
* a report whose sidecars come from another run (a rerun's Markdown or runtime manifest beside
  an old report) fails ``invarlock verify``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from invarlock_core.atomic import SetPublication

OLD = {"report.json": "old report", "notes.md": "old notes"}
NEW = {"report.json": "new report", "notes.md": "new notes", "probe.json": "new probe"}
MEMBERS = frozenset({"report.json", "notes.md", "probe.json"})

# Publishes NEW into argv[1], dying (os._exit) right before file-system operation number argv[2].
_CHILD = r"""
import os, sys
from pathlib import Path
from invarlock_core.atomic import SetPublication, exchange_paths
import invarlock_core.atomic as atomic

target, die_at = Path(sys.argv[1]), int(sys.argv[2])
count = [0]
def step(fn):
    def wrapped(*args, **kwargs):
        count[0] += 1
        if count[0] == die_at:
            os._exit(9)
        return fn(*args, **kwargs)
    return wrapped
atomic.os.replace = step(os.replace)
atomic.exchange_paths = step(exchange_paths)
if sys.argv[3] == "fallback":
    atomic.exchange_paths = step(lambda a, b: False)
publication = SetPublication(target, members=lambda n: n in {"report.json", "notes.md", "probe.json"})
for name, text in {"report.json": "new report", "notes.md": "new notes", "probe.json": "new probe"}.items():
    (publication.stage / name).write_text(text)
publication.publish()
"""


def _set(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in directory.iterdir() if p.name in MEMBERS}


def _old_directory(root: Path) -> Path:
    target = root / "out"
    target.mkdir()
    for name, text in OLD.items():
        (target / name).write_text(text)
    (target / "subject").mkdir()
    (target / "subject" / "weights.bin").write_text("user data")
    (target / "mine.txt").write_text("not part of the set")
    return target


@pytest.mark.parametrize("mode", ["exchange", "fallback"])
@pytest.mark.parametrize("die_at", [1, 2, 3, 4, 5, 99])
def test_a_publication_killed_at_any_step_leaves_one_whole_set(tmp_path: Path, die_at: int, mode: str) -> None:
    target = _old_directory(tmp_path)
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(target), str(die_at), mode], capture_output=True, text=True, check=False
    )
    assert child.returncode in (0, 9), child.stderr

    def check(directory: Path) -> None:
        assert _set(directory) in (OLD, NEW)
        assert (directory / "mine.txt").read_text() == "not part of the set"
        assert (directory / "subject" / "weights.bin").read_text() == "user data"

    # What a reader sees right after the kill: a whole set, or (two-rename fallback only) no
    # directory for an instant, which the next publication repairs.
    if target.exists():
        assert _set(target) in (OLD, NEW)
    else:
        assert mode == "fallback"
    # The next publication repairs the leftovers and publishes its own set.
    publication = SetPublication(target, members=MEMBERS.__contains__)
    check(target)
    (publication.stage / "report.json").write_text("third report")
    publication.publish()
    assert _set(target) == {"report.json": "third report"}
    assert (target / "mine.txt").exists()
    assert (target / "subject" / "weights.bin").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no hidden leftovers


def test_a_discarded_publication_changes_nothing(tmp_path: Path) -> None:
    target = _old_directory(tmp_path)
    publication = SetPublication(target, members=MEMBERS.__contains__)
    (publication.stage / "report.json").write_text("half-made")
    publication.discard()
    assert _set(target) == OLD
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_stranger_in_the_stage_is_refused(tmp_path: Path) -> None:
    publication = SetPublication(tmp_path / "out", members=MEMBERS.__contains__)
    (publication.stage / "other.txt").write_text("x")
    with pytest.raises(ValueError, match=r"other\.txt"):
        publication.publish()
    publication.discard()


QUICK = ("--seq-len", "64", "--preview-windows", "2", "--final-windows", "6", "--device", "cpu", "--guards", "none")


def invarlock(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invarlock_core.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "INVARLOCK_LOAD_PLUGINS": ""},
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def two_runs(tiny_model_dir: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two report sets of the same baseline: a PASS (identical subject) and a FAIL."""
    baseline, other = tiny_model_dir("gpt2"), tiny_model_dir("gpt2", seed=1)
    root = tmp_path_factory.mktemp("runs")
    passed, failed = root / "pass", root / "fail"
    assert invarlock("evaluate", "--baseline", baseline, "--subject", baseline, "--out", passed, *QUICK).returncode == 0
    assert invarlock("evaluate", "--baseline", baseline, "--subject", other, "--out", failed, *QUICK).returncode == 1
    return passed, failed


@pytest.mark.slow
@pytest.mark.parametrize("sidecar", ["runtime.manifest.json", "evaluation_report.md", "evaluate_timing.json"])
def test_a_sidecar_from_another_run_fails_verify(two_runs: tuple[Path, Path], tmp_path: Path, sidecar: str) -> None:
    passed, failed = two_runs
    mixed = tmp_path / "mixed"
    shutil.copytree(passed, mixed)
    assert invarlock("verify", mixed).returncode == 0
    shutil.copyfile(failed / sidecar, mixed / sidecar)
    result = invarlock("verify", mixed)
    assert result.returncode == 1, result.stdout + result.stderr
    assert sidecar in result.stdout + result.stderr


@pytest.mark.slow
def test_a_forged_runtime_manifest_fails_verify(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    passed, _ = two_runs
    forged = tmp_path / "forged"
    shutil.copytree(passed, forged)
    manifest = json.loads((forged / "runtime.manifest.json").read_text())
    manifest["execution_mode"] = "container"  # keeps report_digests: only the report's digest notices
    (forged / "runtime.manifest.json").write_text(json.dumps(manifest))
    result = invarlock("verify", forged)
    assert result.returncode == 1
    assert "is not the runtime manifest this report records" in result.stdout + result.stderr


@pytest.mark.slow
def test_a_rerun_into_a_directory_replaces_the_whole_set(
    two_runs: tuple[Path, Path], tiny_model_dir: Callable[..., Path], tmp_path: Path
) -> None:
    passed, _ = two_runs
    out = tmp_path / "out"
    shutil.copytree(passed, out)
    (out / "rmt_probe.json").write_text("{}")  # a stale probe of an earlier run
    (out / "keep.txt").write_text("mine")
    baseline, other = tiny_model_dir("gpt2"), tiny_model_dir("gpt2", seed=1)
    assert invarlock("evaluate", "--baseline", baseline, "--subject", other, "--out", out, *QUICK).returncode == 1
    assert not (out / "rmt_probe.json").exists()
    assert (out / "keep.txt").read_text() == "mine"
    assert invarlock("verify", out).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
