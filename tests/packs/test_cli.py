"""``invarlock pack ...`` as real subprocesses: exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow  # real subprocesses

Runner = Callable[..., Any]
LIGHT = {"INVARLOCK_LOAD_PLUGINS": "invarlock_packs.commands"}


@pytest.fixture
def pack_cli(invarlock: Runner) -> Runner:
    def call(*args: str, env: dict[str, str] | None = None) -> Any:
        return invarlock("pack", *args, env={**LIGHT, **(env or {})})

    return call


def _one_line_error(done: Any) -> None:
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr


def test_keygen_build_verify_inspect_html_round_trip(
    pack_cli: Runner, tmp_path: Path, inputs: dict[str, Any]
) -> None:
    key = tmp_path / "keys" / "signer.pem"
    done = pack_cli("keygen", str(key), "--json")
    assert done.returncode == 0, done.stderr
    fingerprint = json.loads(done.stdout)["fingerprint"]
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    again = pack_cli("keygen", str(key))
    assert again.returncode == 2
    _one_line_error(again)

    pack = tmp_path / "out" / "evidence_pack"
    done = pack_cli(
        "build",
        str(pack),
        "--final-verdict",
        str(inputs["final_verdict"]),
        *[arg for r in inputs["reports"] for arg in ("--report", str(r))],
        "--scenarios",
        str(inputs["scenarios"]),
        "--source-checkout",
        str(inputs["checkout"]),
        "--material",
        f"model_revisions={inputs['revisions']}",
        "--summary",
        str(inputs["summary"]),
        "--signing-key",
        str(key),
        "--json",
    )
    assert done.returncode == 0, done.stderr
    built = json.loads(done.stdout)
    assert built["signing_key_fingerprint"] == fingerprint
    assert built["evidence_level"] == "high"
    manifest = json.loads((pack / "manifest.json").read_text())
    assert manifest["invocation"]["command"] == "invarlock pack build"
    assert "--signing-key" in manifest["invocation"]["argv"]

    done = pack_cli(
        "verify", str(pack), "--strict", "--expected-fingerprint", fingerprint, "--json"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["ok"]
    assert result["exit_code"] == 0
    assert result["signer_pinned"]
    assert {c["name"] for c in result["checks"]} >= {
        "signature.signer",
        "integrity.checksums",
        "reports.nested",
    }

    done = pack_cli("inspect", str(pack), "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["strict_ready"]
    assert info["signed"]
    assert len(info["reports"]) == 2
    assert all(r["has_runtime_manifest"] for r in info["reports"])

    page = tmp_path / "page.html"
    done = pack_cli("html", str(pack), "-o", str(page))
    assert done.returncode == 0, done.stderr
    assert "Verified" in page.read_text()
    inside = pack_cli("html", str(pack), "-o", str(pack / "page.html"))
    assert inside.returncode == 2
    _one_line_error(inside)
    assert not (pack / "page.html").exists()


def test_verify_exit_codes_and_env_defaults(
    pack_cli: Runner, pack_copy: Path, tmp_path: Path
) -> None:
    missing = pack_cli("verify", str(tmp_path / "absent"))
    assert missing.returncode == 3
    bad_usage = pack_cli("verify", str(pack_copy), "--expected-fingerprint", "abc")
    assert bad_usage.returncode == 2
    _one_line_error(bad_usage)
    wrong = pack_cli("verify", str(pack_copy), "--expected-fingerprint", "sha256:" + "0" * 64)
    assert wrong.returncode == 5
    _one_line_error(wrong)
    (pack_copy / "extra.txt").write_text("x\n")
    assert pack_cli("verify", str(pack_copy)).returncode == 0
    assert pack_cli("verify", str(pack_copy), env={"PACK_STRICT_MODE": "1"}).returncode == 6
    assert pack_cli("verify", str(pack_copy), "--strict").returncode == 6
    assert (
        pack_cli("verify", str(pack_copy), env={"PACK_REPORT_ASSURANCE": "bogus"}).returncode == 2
    )


def test_build_signs_by_default_without_writing_a_key(
    pack_cli: Runner, tmp_path: Path, inputs: dict[str, Any]
) -> None:
    common = [
        "--final-verdict",
        str(inputs["final_verdict"]),
        "--report",
        str(inputs["reports"][0]),
        "--scenarios",
        str(inputs["scenarios"]),
        "--skip-html",
    ]
    work = tmp_path / "work"
    work.mkdir()
    done = pack_cli("build", str(work / "signed"), *common, env={"HOME": str(tmp_path / "home")})
    assert done.returncode == 0, done.stderr
    assert "one-off key" in done.stderr
    assert sorted(p.name for p in work.iterdir()) == ["signed"]
    assert not (tmp_path / "home").exists()
    assert not (work / "signed" / "index.html").exists()
    assert pack_cli("verify", str(work / "signed")).returncode == 0
    for path in (work / "signed").rglob("*"):
        if path.is_file():
            assert b"PRIVATE KEY" not in path.read_bytes()

    unsigned = pack_cli(
        "build", *common, env={"PACK_SIGN_MANIFEST": "0", "PACK_DIR": str(work / "unsigned")}
    )
    assert unsigned.returncode == 0, unsigned.stderr
    assert pack_cli("verify", str(work / "unsigned")).returncode == 5


def test_build_refusals_are_one_line(
    pack_cli: Runner, tmp_path: Path, inputs: dict[str, Any], real_reports: dict[str, Path]
) -> None:
    wrong_name = tmp_path / "report.json"
    wrong_name.write_bytes(real_reports["pass"].read_bytes())
    done = pack_cli(
        "build",
        str(tmp_path / "p"),
        "--final-verdict",
        str(inputs["final_verdict"]),
        "--report",
        str(wrong_name),
    )
    assert done.returncode == 2
    _one_line_error(done)
    done = pack_cli(
        "build",
        str(tmp_path / "p"),
        "--final-verdict",
        str(tmp_path / "missing.json"),
        "--report",
        str(inputs["reports"][0]),
    )
    assert done.returncode == 2
    _one_line_error(done)
    done = pack_cli(
        "build",
        str(tmp_path / "p"),
        "--final-verdict",
        str(inputs["final_verdict"]),
        "--report",
        str(inputs["reports"][0]),
        "--material",
        "no-equals-sign",
    )
    assert done.returncode == 2
    _one_line_error(done)
    assert not (tmp_path / "p").exists()
    assert os.listdir(tmp_path) == ["report.json"]
