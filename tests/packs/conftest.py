"""Fixtures for the evidence-pack tests: real evaluation reports, keys and a sealed pack.

Reports come from real ``invarlock_core.evaluation.evaluate`` runs on tiny GPT-2 checkpoints
built offline (a PASS report: the baseline against itself; a FAIL report: against a differently
seeded model). :func:`report_dir` is the one place that lays a report out the way the suite does
(``runtime.manifest.json`` and ``edit_metadata.json`` beside it).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from packhelpers import SCENARIOS, VERDICT, report_dir, write_json


@pytest.fixture(scope="session")
def real_reports(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Callable[..., Path]
) -> dict[str, Path]:
    """``{"pass": path, "fail": path}``: two real evaluation reports that verify."""
    from invarlock_core.evaluation import EvaluationRequest, evaluate

    out = tmp_path_factory.mktemp("evaluations")
    baseline, other = tiny_model_dir("gpt2"), tiny_model_dir("gpt2", 1)
    settings: dict[str, Any] = {
        "device": "cpu",
        "seq_len": 64,
        "stride": 64,
        "preview_windows": 2,
        "final_windows": 8,
        "bootstrap_replicates": 200,
        "batch_size": 8,
        "guards": ("invariants", "spectral"),
    }
    clean = evaluate(
        EvaluationRequest(baseline=baseline, subject=baseline, out=out / "clean", **settings)
    )
    stress = evaluate(
        EvaluationRequest(baseline=baseline, subject=other, out=out / "stress", **settings)
    )
    assert clean.report["verdict"] == "PASS"
    assert stress.report["verdict"] == "FAIL"
    return {"pass": clean.report_path, "fail": stress.report_path}


@pytest.fixture(scope="session")
def inputs(
    tmp_path_factory: pytest.TempPathFactory, real_reports: dict[str, Path]
) -> dict[str, Any]:
    """Everything ``build_pack`` needs, laid out as a suite run would leave it."""
    root = tmp_path_factory.mktemp("suite-run")
    clean = report_dir(
        root / "runs/gpt2/noop/run1",
        real_reports["pass"],
        scenario="noop_clean",
        category="clean",
        edit_type="noop",
        artifact_class="validation_subject_checkpoint",
    )
    stress = report_dir(
        root / "runs/gpt2/reseed/run1",
        real_reports["fail"],
        scenario="reseed_stress",
        category="stress",
        edit_type="reseed",
        artifact_class="fault_injection_fixture",
    )
    checkout = root / "checkout"
    checkout.mkdir()
    git = ["git", "-C", str(checkout), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git[:3], "init", "-q"], check=True)
    (checkout / "README").write_text("x\n")
    subprocess.run([*git, "add", "README"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "init"], check=True)
    return {
        "root": root,
        "reports": [clean, stress],
        "final_verdict": write_json(root / "final_verdict.json", VERDICT),
        "scenarios": write_json(root / "scenarios.json", SCENARIOS),
        "revisions": write_json(root / "model_revisions.json", {"gpt2": "0" * 40}),
        "summary": write_json(
            root / "category_summary.json", {"clean": {"pass": 1}, "stress": {"fail": 1}}
        ),
        "checkout": checkout,
    }


@pytest.fixture(scope="session")
def key(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A signing key pair written by ``generate_key``."""
    from invarlock_packs import KeyPair, generate_key
    from invarlock_packs.signing import public_key_path

    path = tmp_path_factory.mktemp("keys") / "signer.pem"
    signer = generate_key(path)
    return KeyPair(path, public_key_path(path), signer)


@pytest.fixture(scope="session")
def build_kwargs(inputs: dict[str, Any], key: Any) -> dict[str, Any]:
    from invarlock_packs import collect_source_repo

    return {
        "final_verdict": inputs["final_verdict"],
        "reports": inputs["reports"],
        "signing_key": key.private_key_path,
        "metadata": {
            "scenarios": inputs["scenarios"],
            "source_repo": collect_source_repo(inputs["checkout"]),
        },
        "materials": {"model_revisions": inputs["revisions"]},
        "summaries": [inputs["summary"]],
    }


@pytest.fixture(scope="session")
def sealed_pack(tmp_path_factory: pytest.TempPathFactory, build_kwargs: dict[str, Any]) -> Path:
    """A signed pack built once per session. Tests must copy it (``pack_copy``) before changing it."""
    from invarlock_packs import build_pack

    return build_pack(tmp_path_factory.mktemp("built") / "evidence_pack", **build_kwargs).path


@pytest.fixture
def pack_copy(sealed_pack: Path, tmp_path: Path) -> Path:
    """A private copy of the sealed pack that a test may tamper with."""
    return Path(shutil.copytree(sealed_pack, tmp_path / "pack", symlinks=True))


@pytest.fixture(autouse=True)
def _isolated_trust_store(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep a trust store in the developer's real ~/.config from changing test outcomes."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))
