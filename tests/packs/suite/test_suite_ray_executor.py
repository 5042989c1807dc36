"""A small suite on a local Ray instance (fake GPUs) reaches the same results as the local executor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from invarlock_packs import run_suite

SMALL = {
    "DRIFT_CALIBRATION_RUNS": "1",
    "CLEAN_EDIT_RUNS": "1",
    "STRESS_EDIT_RUNS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
FLAGS: dict[str, Any] = {
    "models": ("tiny:gpt2",),
    "scenario_ids": ("prune_clean", "prune_50_stress", "nan_injection"),
}


def results(out: Path) -> dict[str, Any]:
    reports = {
        str(p.parent.relative_to(out)): json.loads(p.read_text())["verdict"]
        for p in sorted((out / "tiny-gpt2" / "reports").rglob("evaluation.report.json"))
    }
    verdict = json.loads((out / "reports" / "final_verdict.json").read_text())
    return {"verdict": verdict["verdict"], "criteria": verdict["criteria"], "reports": reports}


@pytest.mark.slow
def test_ray_and_local_executors_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ray = pytest.importorskip("ray", reason="ray is an optional extra (invarlock-core[ray])")
    for name, value in SMALL.items():
        monkeypatch.setenv(name, value)
    local = run_suite("tiny", out=tmp_path / "local", invocation=["test"], **FLAGS)
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = run_suite(
            "tiny", out=tmp_path / "ray", executor="ray", invocation=["test"], **FLAGS
        )
    finally:
        ray.shutdown()
    assert remote.exit_code == local.exit_code
    assert remote.verdict == local.verdict
    assert remote.pack_verified
    assert results(tmp_path / "ray") == results(tmp_path / "local")
    devices = (tmp_path / "ray" / "logs" / "tasks" / "tiny-gpt2.SETUP_BASELINE.log").read_text()
    assert ":gpu" in devices  # ran on a Ray-assigned (fake) GPU
