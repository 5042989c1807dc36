"""``lowrank_svd`` with a rank at or above every selected matrix's size would change nothing: it is
refused with one line (exit 2) instead of writing an identical "edited" checkpoint."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_a_rank_that_changes_nothing_is_refused(
    invarlock: Callable[..., subprocess.CompletedProcess[str]], tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    baseline = tiny_model_dir("gpt2")
    out = tmp_path / "edited"
    result = invarlock("edit", "apply", "--baseline", str(baseline), "--edit", "lowrank_svd:100000:all", "--out", str(out))
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "would change nothing" in lines[0]
    assert not out.exists()
    ok = invarlock("edit", "apply", "--baseline", str(baseline), "--edit", "lowrank_svd:4:all", "--out", str(out))
    assert ok.returncode == 0, ok.stderr
