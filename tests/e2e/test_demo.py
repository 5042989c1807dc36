"""``make demo`` runs the tiny evidence-pack suite offline and hands back a verified, signed pack."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_runs_the_tiny_suite(tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "demo.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    lines = result.stdout.splitlines()
    verdict = json.loads((out / "reports" / "final_verdict.json").read_text())
    assert f"verdict: {verdict['verdict']}" in lines
    criteria = verdict["criteria"]
    # the gating criteria hold on the tiny models (informational ones are signals)
    assert criteria["clean_all_pass"] is True
    assert criteria["stress_required_fail"] is True
    assert criteria["error_injection_detected"] is True
    assert f"pack: {out / 'evidence_pack'} (verified --strict)" in lines
    signer = next(line for line in lines if line.startswith("signer: sha256:"))
    assert f"html: {out / 'evidence_pack' / 'index.html'}" in lines
    key = out / "keys" / "signing_key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    manifest = json.loads((out / "evidence_pack" / "manifest.json").read_text())
    assert manifest["signing_key_fingerprint"] == signer.removeprefix("signer: ")
    # every default scenario of both tiny models was evaluated
    scenarios = json.loads((out / "state" / "scenarios.json").read_text())["scenarios"]
    assert len(scenarios) == 20
    reports = list((out / "evidence_pack" / "reports").rglob("evaluation.report.json"))
    runs = sum(s["runs"] for s in scenarios)
    assert len(reports) == 2 * runs
    verify = subprocess.run(
        [
            sys.executable,
            "-m",
            "invarlock_core.cli",
            "pack",
            "verify",
            str(out / "evidence_pack"),
            "--strict",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
