"""build_pack: layout, manifest contents, provenance, atomicity and refusals."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from packhelpers import VERDICT, write_json

from invarlock_core.errors import InputError, SchemaError, UsageError
from invarlock_core.schema_validation import schema_errors
from invarlock_packs import ReportInput, build_pack, verify_pack
from invarlock_packs.errors import PackReportError, VerdictRequirementError


def _files(pack: Path) -> set[str]:
    return {p.relative_to(pack).as_posix() for p in pack.rglob("*") if p.is_file()}


def test_layout_follows_the_published_format(sealed_pack: Path) -> None:
    files = _files(sealed_pack)
    for required in (
        "manifest.json",
        "manifest.signature.json",
        "checksums.sha256",
        "README.md",
        "index.html",
        "results/final_verdict.json",
        "results/final_verdict.txt",
        "results/category_summary.json",
        "metadata/environment.json",
        "metadata/source_repo.json",
        "metadata/scenarios.json",
        "metadata/materials/model_revisions.json",
    ):
        assert required in files
    reports = sorted(f for f in files if f.endswith("/evaluation.report.json"))
    assert len(reports) == 2
    for report in reports:
        parts = report.split("/")
        assert parts[0] == "reports"
        assert len(parts) == 5
        directory = report.rsplit("/", 1)[0]
        assert f"{directory}/runtime.manifest.json" in files
        assert f"{directory}/edit_metadata.json" in files
    assert (sealed_pack / "results/final_verdict.txt").read_text().startswith("PASS")


def test_checksums_cover_every_file_but_control_files(sealed_pack: Path) -> None:
    lines = (sealed_pack / "checksums.sha256").read_text().splitlines()
    listed = {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in lines}
    assert [line.split("  ", 1)[1] for line in lines] == sorted(listed)
    assert set(listed) == _files(sealed_pack) - {
        "manifest.json",
        "checksums.sha256",
        "manifest.signature.json",
    }
    for rel, digest in listed.items():
        assert hashlib.sha256((sealed_pack / rel).read_bytes()).hexdigest() == digest
    done = subprocess.run(
        ["sha256sum", "-c", "--quiet", "checksums.sha256"],
        cwd=sealed_pack,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_manifest_binds_checksums_and_carries_provenance(sealed_pack: Path, key: Any) -> None:
    raw = (sealed_pack / "manifest.json").read_bytes()
    manifest = json.loads(raw)
    assert schema_errors(manifest, "evidence-pack-manifest", "invarlock_packs") == []
    assert list(manifest) == sorted(manifest)
    assert manifest["format"] == "evidence-pack-v1"
    assert manifest["checksums_sha256"] == "checksums.sha256"
    assert (
        manifest["checksums_sha256_digest"]
        == hashlib.sha256((sealed_pack / "checksums.sha256").read_bytes()).hexdigest()
    )
    assert manifest["signing_key_fingerprint"] == key.fingerprint
    assert manifest["builder"]["name"] == "invarlock-packs"
    assert manifest["evidence_level"] == "high"
    assert manifest["subject"]["verdict"] == "PASS"
    categories = sorted(r["category"] for r in manifest["subject"]["reports"])
    assert categories == ["clean", "stress"]
    for ref in (
        manifest["environment"],
        manifest["source_repo"],
        manifest["scenarios"],
        manifest["subject"]["final_verdict"],
        *manifest["materials"],
        *manifest["subject"]["reports"],
    ):
        assert (
            ref["sha256"]
            == "sha256:" + hashlib.sha256((sealed_pack / ref["path"]).read_bytes()).hexdigest()
        )
    assert manifest["materials"][0]["name"] == "model_revisions"
    assert manifest["verification"]["reports_verified"] == 2


def test_signature_bundle_format_and_fingerprint(sealed_pack: Path, key: Any) -> None:
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    bundle = json.loads((sealed_pack / "manifest.signature.json").read_bytes())
    assert bundle["format"] == "evidence-pack-signature-v1"
    assert bundle["algorithm"] == "ed25519"
    assert bundle["public_key"]["encoding"] == "pem"
    assert bundle["signature"]["encoding"] == "base64"
    public = serialization.load_pem_public_key(bundle["public_key"]["value"].encode())
    assert isinstance(public, Ed25519PublicKey)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert (
        bundle["signing_key_fingerprint"]
        == "sha256:" + hashlib.sha256(raw).hexdigest()
        == key.fingerprint
    )
    public.verify(
        base64.b64decode(bundle["signature"]["value"]), (sealed_pack / "manifest.json").read_bytes()
    )


def test_no_private_key_material_in_the_pack(sealed_pack: Path, key: Any) -> None:
    secret = key.private_key_path.read_bytes()
    for path in sealed_pack.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"PRIVATE KEY" not in data
            assert secret not in data


def test_keygen_writes_0600_private_key(key: Any) -> None:
    assert stat.S_IMODE(os.stat(key.private_key_path).st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in key.private_key_path.read_bytes()
    assert b"BEGIN PUBLIC KEY" in key.public_key_path.read_bytes()


def test_keygen_refuses_to_overwrite(key: Any) -> None:
    from invarlock_packs import generate_key

    before = key.private_key_path.read_bytes()
    with pytest.raises(InputError, match="already exists"):
        generate_key(key.private_key_path)
    assert key.private_key_path.read_bytes() == before


def test_failed_report_verification_leaves_nothing(
    tmp_path: Path, build_kwargs: dict[str, Any], inputs: dict[str, Any]
) -> None:
    bad_dir = tmp_path / "run"
    bad_dir.mkdir()
    report = json.loads(inputs["reports"][0].read_text())
    report["verdict"] = "FAIL" if report["verdict"] == "PASS" else "PASS"
    write_json(bad_dir / "evaluation.report.json", report)
    write_json(bad_dir / "runtime.manifest.json", {"python": "3"})
    out = tmp_path / "out" / "pack"
    with pytest.raises(PackReportError) as excinfo:
        build_pack(out, **{**build_kwargs, "reports": [bad_dir / "evaluation.report.json"]})
    assert excinfo.value.exit_code == 7
    assert not out.exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_failure_while_sealing_leaves_no_partial_pack(
    tmp_path: Path, build_kwargs: dict[str, Any]
) -> None:
    # A key held on a hardware token that is unplugged while the manifest is being signed: the
    # failure happens after every file has been staged, and still nothing appears at the target.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    real = Ed25519PrivateKey.generate()

    class UnpluggedToken(Ed25519PrivateKey):
        def public_key(self) -> Ed25519PublicKey:
            return real.public_key()

        def sign(self, data: bytes | bytearray | memoryview) -> bytes:
            raise OSError("signing token removed")

        def private_bytes(self, *args: Any, **kwargs: Any) -> bytes:
            raise OSError("keys never leave the token")

        def private_bytes_raw(self) -> bytes:
            raise OSError("keys never leave the token")

        def __copy__(self) -> UnpluggedToken:
            return self

        def __deepcopy__(self, memo: Any) -> UnpluggedToken:
            return self

    out = tmp_path / "packs" / "p"
    with pytest.raises(OSError, match="token removed"):
        build_pack(out, **{**build_kwargs, "signing_key": UnpluggedToken()})
    assert not out.exists()
    assert list((tmp_path / "packs").iterdir()) == []  # the hidden staging directory is gone too


def test_non_ed25519_key_is_refused(tmp_path: Path, build_kwargs: dict[str, Any]) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = tmp_path / "ec.pem"
    pem.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(InputError, match="not an Ed25519 key"):
        build_pack(tmp_path / "p", **{**build_kwargs, "signing_key": pem})
    assert not (tmp_path / "p").exists()


def test_report_without_runtime_manifest_is_refused(
    tmp_path: Path, build_kwargs: dict[str, Any], real_reports: dict[str, Path]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "evaluation.report.json").write_bytes(real_reports["pass"].read_bytes())
    with pytest.raises(InputError, match=r"runtime\.manifest\.json"):
        build_pack(tmp_path / "p", **{**build_kwargs, "reports": [run / "evaluation.report.json"]})
    built = build_pack(
        tmp_path / "p2",
        **{
            **build_kwargs,
            "reports": [run / "evaluation.report.json"],
            "require_runtime_manifests": False,
        },
    )
    assert built.evidence_level == "low"  # no clean report with runtime provenance


def test_report_must_be_named_evaluation_report_json(
    tmp_path: Path, build_kwargs: dict[str, Any], real_reports: dict[str, Path]
) -> None:
    other = tmp_path / "report.json"
    other.write_bytes(real_reports["pass"].read_bytes())
    with pytest.raises(InputError, match=r"evaluation\.report\.json"):
        build_pack(tmp_path / "p", **{**build_kwargs, "reports": [other]})


def test_require_pass_and_release_review(tmp_path: Path, build_kwargs: dict[str, Any]) -> None:
    failing = write_json(
        tmp_path / "fv.json",
        {**VERDICT, "verdict": "FAIL", "failed_requirements": ["clean_all_pass"]},
    )
    with pytest.raises(VerdictRequirementError):
        build_pack(
            tmp_path / "p", **{**build_kwargs, "final_verdict": failing, "require_pass": True}
        )
    with pytest.raises(UsageError, match="signing key"):
        build_pack(tmp_path / "p", **{**build_kwargs, "signing_key": None, "release_review": True})
    built = build_pack(tmp_path / "fail-pack", **{**build_kwargs, "final_verdict": failing})
    assert built.verdict == "FAIL"
    assert "failed: clean_all_pass" in (built.path / "results/final_verdict.txt").read_text()


def test_bad_final_verdict_is_a_schema_error(tmp_path: Path, build_kwargs: dict[str, Any]) -> None:
    bad = write_json(tmp_path / "fv.json", {"verdict": "MAYBE"})
    with pytest.raises(SchemaError):
        build_pack(tmp_path / "p", **{**build_kwargs, "final_verdict": bad})
    assert not (tmp_path / "p").exists()


def test_existing_destination_is_not_replaced_without_overwrite(
    tmp_path: Path, build_kwargs: dict[str, Any]
) -> None:
    first = build_pack(tmp_path / "p", **build_kwargs)
    with pytest.raises(InputError, match="already exists"):
        build_pack(tmp_path / "p", **build_kwargs)
    second = build_pack(tmp_path / "p", **{**build_kwargs, "overwrite": True})
    assert second.path == first.path
    assert verify_pack(second.path).ok
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]  # no staging leftovers


def test_evidence_levels(
    tmp_path: Path, build_kwargs: dict[str, Any], inputs: dict[str, Any]
) -> None:
    stress_only = build_pack(
        tmp_path / "low", **{**build_kwargs, "reports": [inputs["reports"][1]]}
    )
    assert stress_only.evidence_level == "low"
    no_source = build_pack(
        tmp_path / "medium", **{**build_kwargs, "metadata": {"scenarios": inputs["scenarios"]}}
    )
    assert no_source.evidence_level == "medium"


def test_explicit_identity_and_unique_runs(
    tmp_path: Path, build_kwargs: dict[str, Any], inputs: dict[str, Any]
) -> None:
    clean = inputs["reports"][0]
    built = build_pack(
        tmp_path / "p",
        **{
            **build_kwargs,
            "reports": [
                ReportInput(clean, model="Org/Model-7B", edit="noop"),
                ReportInput(clean, model="Org/Model-7B", edit="noop"),
            ],
        },
    )
    manifest = json.loads((built.path / "manifest.json").read_text())
    paths = [r["path"] for r in manifest["subject"]["reports"]]
    assert paths == [
        "reports/org__model-7b/noop/run1/evaluation.report.json",
        "reports/org__model-7b/noop/run2/evaluation.report.json",
    ]
    assert verify_pack(built.path).ok


def test_source_date_epoch_makes_builds_reproducible(
    tmp_path: Path, build_kwargs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    kwargs = {
        **build_kwargs,
        "metadata": {**build_kwargs["metadata"], "environment": {"fixed": True}},
    }
    a = build_pack(tmp_path / "a", **kwargs)
    b = build_pack(tmp_path / "b", **kwargs)
    assert (a.path / "manifest.json").read_bytes() == (b.path / "manifest.json").read_bytes()
    assert a.manifest_sha256 == b.manifest_sha256
    assert (
        json.loads((a.path / "manifest.json").read_text())["created_at"] == "2023-11-14T22:13:20Z"
    )


def test_edit_metadata_needs_agreeing_scenarios(
    tmp_path: Path, build_kwargs: dict[str, Any], inputs: dict[str, Any]
) -> None:
    with pytest.raises(InputError, match="scenarios"):
        build_pack(tmp_path / "p", **{**build_kwargs, "metadata": {}})
    wrong = write_json(
        tmp_path / "scenarios.json",
        {
            "scenarios": [
                {"id": "noop_clean", "category": "stress"},
                {"id": "reseed_stress", "category": "stress"},
            ]
        },
    )
    with pytest.raises(InputError, match="disagrees"):
        build_pack(tmp_path / "p", **{**build_kwargs, "metadata": {"scenarios": wrong}})
    assert not (tmp_path / "p").exists()
