"""``make demo`` runs end to end offline and gets the verdicts it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_runs_offline(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "demo.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "clean edit (RTN 8-bit, FFN): PASS (exit 0)" in out
    assert "stress edit (50% pruning, all): FAIL (exit 1)" in out
    assert "fault injection (NaN weight): FAIL (exit 1)" in out
    assert out.count("invarlock verify: OK (exit 0)") == 3
    assert (tmp_path / "stress" / "evaluation.report.json").is_file()
