"""A reused baseline report must prove it belongs to this baseline, or be refused (exit 2).

Real ``invarlock evaluate`` subprocesses on a tiny GPT-2. The forgery is the one a hostile user
would try: lower the recorded baseline NLLs so that a damaged subject looks like a PASS, with and
without recomputing the report's digests afterwards.
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

pytestmark = pytest.mark.slow

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


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def models(tiny_model_dir: Callable[..., Path]) -> tuple[Path, Path]:
    return tiny_model_dir("gpt2"), tiny_model_dir("gpt2", seed=1)


@pytest.fixture(scope="module")
def honest(models: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A genuine report of the baseline against a very different subject (a FAIL)."""
    baseline, subject = models
    out = tmp_path_factory.mktemp("honest")
    result = invarlock("evaluate", "--baseline", baseline, "--subject", subject, "--out", out, *QUICK)
    assert result.returncode == 1, result.stderr
    return out / "evaluation.report.json"


def _forged(honest: Path, target: Path, *, reseal: bool) -> Path:
    from invarlock_core.report.document import compute_digests

    report = json.loads(honest.read_text())
    for group in ("final", "preview"):
        for window in report["primary_metric"]["per_window"][group]:
            window["baseline_nll"] = window["subject_nll"] - 0.001  # "the subject is as good"
    if reseal:
        report["digests"] = compute_digests(report)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(report, sort_keys=True, indent=2))
    return target


def test_the_honest_report_is_reused(models: tuple[Path, Path], honest: Path, tmp_path: Path) -> None:
    baseline, subject = models
    result = invarlock(
        "evaluate", "--baseline", baseline, "--subject", subject, "--out", tmp_path, "--baseline-report", honest, *QUICK
    )
    assert result.returncode == 1, result.stderr
    report = json.loads((tmp_path / "evaluation.report.json").read_text())
    assert report["timings"]["baseline"]["reused_report"] is True


def test_lowered_numbers_without_a_new_seal_are_refused(models: tuple[Path, Path], honest: Path, tmp_path: Path) -> None:
    baseline, subject = models
    forged = _forged(honest, tmp_path / "forged" / "evaluation.report.json", reseal=False)
    out = tmp_path / "out"
    result = invarlock(
        "evaluate", "--baseline", baseline, "--subject", subject, "--out", out, "--baseline-report", forged, *QUICK
    )
    line = one_error_line(result)
    assert "is not an intact report" in line
    assert "digest per_window mismatch" in line
    assert not (out / "evaluation.report.json").exists()


def test_lowered_numbers_with_a_new_seal_are_refused(models: tuple[Path, Path], honest: Path, tmp_path: Path) -> None:
    baseline, subject = models
    forged = _forged(honest, tmp_path / "forged" / "evaluation.report.json", reseal=True)
    out = tmp_path / "out"
    result = invarlock(
        "evaluate", "--baseline", baseline, "--subject", subject, "--out", out, "--baseline-report", forged, *QUICK
    )
    line = one_error_line(result)
    assert "the numbers are not this baseline's" in line
    assert not (out / "evaluation.report.json").exists()


def test_a_report_of_another_baseline_is_refused(models: tuple[Path, Path], honest: Path, tmp_path: Path) -> None:
    baseline, subject = models
    other = tmp_path / "other"
    shutil.copytree(subject, other)
    result = invarlock(
        "evaluate", "--baseline", other, "--subject", baseline, "--out", tmp_path / "o", "--baseline-report", honest, *QUICK
    )
    assert "made for a different baseline checkpoint" in one_error_line(result)
