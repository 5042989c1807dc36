"""verify_pack: every exit code of the published contract, pinning, trust stores, foreign packs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from packhelpers import reseal, write_json

from invarlock_core.canonical import canonical_json, sha256_hex
from invarlock_core.errors import UsageError
from invarlock_packs import build_pack, generate_key, verify_pack
from invarlock_packs.manifest_contents import manifest_bytes
from invarlock_packs.signing import load_private_key, sign_manifest


def _names(result: Any) -> set[str]:
    return {c.name for c in result.checks}


def test_sealed_pack_verifies_with_every_check_recorded(sealed_pack: Path) -> None:
    result = verify_pack(sealed_pack, strict=True, use_default_trust_store=False)
    assert result.ok, result.problems
    assert result.exit_code == 0
    assert {
        "format.schema",
        "signature.valid",
        "integrity.digest_binding",
        "integrity.checksums",
        "integrity.digest_refs",
        "integrity.strict_extra_files",
        "reports.nested",
        "reports.edit_metadata",
    } <= _names(result)
    assert result.reports_checked == 2
    assert not result.signer_pinned
    signer = next(c for c in result.checks if c.name == "signature.signer")
    assert signer.category == "info"
    assert "not pinned" in signer.detail


def test_pinning_the_expected_signer(sealed_pack: Path, key: Any, tmp_path: Path) -> None:
    assert verify_pack(
        sealed_pack, expected_fingerprint=key.fingerprint.upper().replace("SHA256", "sha256")
    ).ok
    other = generate_key(tmp_path / "other.pem")
    wrong = verify_pack(sealed_pack, expected_fingerprint=other)
    assert (wrong.ok, wrong.exit_code) == (False, 5)
    assert "not trusted" in wrong.problems[0]
    with pytest.raises(UsageError):
        verify_pack(sealed_pack, expected_fingerprint="sha256:abc")


@pytest.mark.parametrize("shape", ["list", "trusted_signers", "fingerprints"])
def test_trust_store_shapes(sealed_pack: Path, key: Any, tmp_path: Path, shape: str) -> None:
    entries: Any = {
        "list": [key.fingerprint],
        "trusted_signers": {"trusted_signers": [{"fingerprint": key.fingerprint, "name": "ci"}]},
        "fingerprints": {"fingerprints": ["sha256:" + "0" * 64, key.fingerprint]},
    }[shape]
    store = write_json(tmp_path / "store.json", entries)
    result = verify_pack(sealed_pack, trust_store=store)
    assert result.ok
    assert result.signer_pinned
    untrusted = write_json(tmp_path / "untrusted.json", ["sha256:" + "1" * 64])
    assert verify_pack(sealed_pack, trust_store=untrusted).exit_code == 5


def test_default_trust_store_is_used_when_present(
    sealed_pack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert not verify_pack(sealed_pack).signer_pinned
    write_json(tmp_path / "invarlock" / "trusted-signers.json", ["sha256:" + "2" * 64])
    result = verify_pack(sealed_pack)
    assert result.signer_pinned
    assert result.exit_code == 5
    assert verify_pack(sealed_pack, use_default_trust_store=False).ok


def test_bad_trust_store_is_a_usage_error(sealed_pack: Path, tmp_path: Path) -> None:
    bad = tmp_path / "store.json"
    bad.write_text("{not json")
    with pytest.raises(UsageError):
        verify_pack(sealed_pack, trust_store=bad)
    with pytest.raises(UsageError):
        verify_pack(sealed_pack, trust_store=write_json(tmp_path / "s2.json", {"people": []}))


def test_unsigned_pack_fails_closed(tmp_path: Path, build_kwargs: dict[str, Any]) -> None:
    built = build_pack(tmp_path / "p", **{**build_kwargs, "signing_key": None})
    result = verify_pack(built.path)
    assert (result.exit_code, result.signer_fingerprint) == (5, None)
    assert "unsigned" in result.problems[0]


def test_missing_pack_and_required_files(pack_copy: Path, tmp_path: Path) -> None:
    assert verify_pack(tmp_path / "nope").exit_code == 3
    (pack_copy / "checksums.sha256").unlink()
    assert verify_pack(pack_copy).exit_code == 3
    (pack_copy / "manifest.json").unlink()
    assert verify_pack(pack_copy).exit_code == 3


@pytest.mark.parametrize(
    "content", [b"{not json", b"[]", b'{"format": "proof-packs-v0"}', b"\xff\xfe"]
)
def test_unreadable_manifest_is_a_format_failure(pack_copy: Path, content: bytes) -> None:
    (pack_copy / "manifest.json").write_bytes(content)
    assert verify_pack(pack_copy).exit_code == 4


def test_schema_violation_is_a_format_failure_even_when_signed(pack_copy: Path, key: Any) -> None:
    def bad(manifest: dict[str, Any]) -> None:
        manifest["evidence_level"] = "ultra"

    reseal(pack_copy, key.private_key_path, edit_manifest=bad)
    result = verify_pack(pack_copy)
    assert result.exit_code == 4
    assert "evidence_level" in result.problems[0]


def test_strict_mode_rejects_unlisted_files(pack_copy: Path) -> None:
    (pack_copy / "results" / "notes.txt").write_text("added later\n")
    lenient = verify_pack(pack_copy)
    assert lenient.ok
    assert any(
        c.name == "integrity.extra_files" and "notes.txt" in c.detail for c in lenient.checks
    )
    strict = verify_pack(pack_copy, strict=True)
    assert strict.exit_code == 6
    assert "results/notes.txt" in strict.problems[0]


def test_symlinks_special_files_and_case_collisions_fail_integrity(pack_copy: Path) -> None:
    link = pack_copy / "results" / "link.json"
    link.symlink_to(pack_copy / "results" / "final_verdict.json")
    assert verify_pack(pack_copy).exit_code == 6
    link.unlink()
    os.mkfifo(pack_copy / "metadata" / "pipe")
    assert verify_pack(pack_copy).exit_code == 6
    (pack_copy / "metadata" / "pipe").unlink()
    (pack_copy / "readme.md").write_text("shadow\n")
    result = verify_pack(pack_copy)
    assert result.exit_code == 6
    assert any("case" in p for p in result.problems)


def test_listed_file_replaced_by_a_fifo_fails_without_blocking(pack_copy: Path) -> None:
    target = pack_copy / "metadata" / "environment.json"
    target.unlink()
    os.mkfifo(target)  # opening it for reading would block forever without O_NONBLOCK
    result = verify_pack(pack_copy)
    assert result.exit_code == 6
    assert any("special file" in p for p in result.problems)


def test_listed_symlink_replacing_a_file_is_rejected(pack_copy: Path, tmp_path: Path) -> None:
    target = pack_copy / "results" / "final_verdict.json"
    outside = tmp_path / "outside.json"
    shutil.copyfile(target, outside)
    target.unlink()
    target.symlink_to(outside)  # same bytes, but through a link
    assert verify_pack(pack_copy).exit_code == 6


def test_unsafe_checksum_paths_are_rejected(pack_copy: Path, key: Any) -> None:
    for line in (
        "0" * 64 + "  ../outside.json\n",
        "0" * 64 + "  /etc/passwd\n",
        "0" * 64 + "  a//b\n",
    ):
        body = (pack_copy / "checksums.sha256").read_bytes() + line.encode()
        (pack_copy / "checksums.sha256").write_bytes(body)

        def bind(manifest: dict[str, Any], body: bytes = body) -> None:
            manifest["checksums_sha256_digest"] = sha256_hex(body)

        _resign(pack_copy, key, bind)
        result = verify_pack(pack_copy)
        assert result.exit_code == 6
        assert any("checksums.sha256" in p for p in result.problems)
        (pack_copy / "checksums.sha256").write_bytes(body.replace(line.encode(), b""))


def _resign(pack: Path, key: Any, edit: Any) -> None:
    manifest = json.loads((pack / "manifest.json").read_text())
    edit(manifest)
    body = manifest_bytes(manifest)
    (pack / "manifest.json").write_bytes(body)
    (pack / "manifest.signature.json").write_bytes(
        canonical_json(sign_manifest(body, load_private_key(key.private_key_path)))
    )


def test_signed_but_tampered_report_fails_nested_verification(pack_copy: Path, key: Any) -> None:
    report = next(pack_copy.glob("reports/*/noop_clean/run1/evaluation.report.json"))
    data = json.loads(report.read_text())
    data["verdict"] = "FAIL"  # a hand edit the core verifier must catch
    report.write_text(json.dumps(data, indent=2, sort_keys=True))
    reseal(pack_copy, key.private_key_path)
    result = verify_pack(pack_copy, expected_fingerprint=key.fingerprint)
    assert result.exit_code == 7
    assert "noop" in result.problems[0]
    assert verify_pack(pack_copy, report_assurance="off").ok


def test_edit_metadata_must_agree_with_scenarios(pack_copy: Path, key: Any) -> None:
    meta_path = next(pack_copy.glob("reports/*/noop_clean/run1/edit_metadata.json"))
    meta = json.loads(meta_path.read_text())
    meta["category"] = "stress"
    write_json(meta_path, meta)
    reseal(pack_copy, key.private_key_path)
    result = verify_pack(pack_copy)
    assert result.exit_code == 7
    assert "disagrees with scenarios.json" in result.problems[0]


def test_strict_report_assurance_requires_runtime_manifests(pack_copy: Path, key: Any) -> None:
    runtime = next(pack_copy.glob("reports/*/reseed_stress/run1/runtime.manifest.json"))
    runtime.unlink()

    def drop(manifest: dict[str, Any]) -> None:
        for entry in manifest["subject"]["reports"]:
            if entry["runtime_manifest"] and entry["runtime_manifest"]["path"].endswith(
                "reseed_stress/run1/runtime.manifest.json"
            ):
                entry["runtime_manifest"] = None

    reseal(pack_copy, key.private_key_path, edit_manifest=drop)
    assert verify_pack(pack_copy).ok
    strict = verify_pack(pack_copy, report_assurance="strict")
    assert strict.exit_code == 7
    assert "runtime.manifest.json" in strict.problems[0]


def test_manifest_naming_another_signer_fails(pack_copy: Path, tmp_path: Path) -> None:
    generate_key(tmp_path / "other.pem")
    body = (pack_copy / "manifest.json").read_bytes()  # still names the original signer
    (pack_copy / "manifest.signature.json").write_bytes(
        canonical_json(sign_manifest(body, load_private_key(tmp_path / "other.pem")))
    )
    result = verify_pack(pack_copy)
    assert result.exit_code == 5
    assert "names signer" in result.problems[0]


def test_signature_bundle_layout_does_not_matter_but_its_base64_does(pack_copy: Path) -> None:
    bundle = json.loads((pack_copy / "manifest.signature.json").read_bytes())
    (pack_copy / "manifest.signature.json").write_text(json.dumps(bundle, indent=1))
    assert verify_pack(pack_copy).ok
    # A 64-byte signature ends "X==" where X carries 2 data bits and 4 zero bits; setting one of
    # the zero bits decodes to the same bytes (a second spelling), which must be refused.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    value = bundle["signature"]["value"]
    spare = alphabet[alphabet.index(value[-3]) | 1]
    bundle["signature"]["value"] = value[:-3] + spare + "=="
    (pack_copy / "manifest.signature.json").write_text(json.dumps(bundle))
    result = verify_pack(pack_copy)
    assert result.exit_code == 5
    assert "base64" in result.problems[0]


def test_pack_from_another_tool_verifies_on_integrity_and_signature(
    tmp_path: Path, real_reports: dict[str, Path], key: Any
) -> None:
    # A minimal pack written by hand, as another implementation of the published format would:
    # only the schema-required manifest core, no provenance block, its own directory names.
    pack = tmp_path / "foreign"
    (pack / "reports/m/e/r").mkdir(parents=True)
    shutil.copyfile(real_reports["pass"], pack / "reports/m/e/r/evaluation.report.json")
    (pack / "results").mkdir()
    (pack / "results/final_verdict.json").write_text('{"verdict": "PASS"}\n')
    lines = []
    for rel in sorted(["reports/m/e/r/evaluation.report.json", "results/final_verdict.json"]):
        lines.append(f"{sha256_hex((pack / rel).read_bytes())}  {rel}\n")
    checksums = "".join(lines).encode()
    (pack / "checksums.sha256").write_bytes(checksums)
    manifest = json.dumps(
        {
            "format": "evidence-pack-v1",
            "checksums_sha256": "checksums.sha256",
            "checksums_sha256_digest": sha256_hex(checksums),
            "tool": "other-packer 2.1",
        }
    ).encode()
    (pack / "manifest.json").write_bytes(manifest)
    assert verify_pack(pack).exit_code == 5  # unsigned: fails closed, like ours
    (pack / "manifest.signature.json").write_bytes(
        canonical_json(sign_manifest(manifest, load_private_key(key.private_key_path)))
    )
    result = verify_pack(pack, strict=True, expected_fingerprint=key.fingerprint)
    assert result.ok, result.problems
    assert result.reports_checked == 1


def test_bad_report_assurance_value_is_a_usage_error(sealed_pack: Path) -> None:
    with pytest.raises(UsageError):
        verify_pack(sealed_pack, report_assurance="paranoid")  # type: ignore[arg-type]


def test_profiles_are_checked_and_applied(sealed_pack: Path) -> None:
    with pytest.raises(UsageError, match="unknown profile"):
        verify_pack(sealed_pack, profile="nightly")
    # The tiny test reports carry 8 final windows: fine for "dev", below the "release" floors.
    assert verify_pack(sealed_pack, profile="dev").ok
    release = verify_pack(sealed_pack, profile="release")
    assert release.exit_code == 7
    assert "profile release" in release.problems[0]


def test_large_packs_verify_reports_in_worker_processes(
    tmp_path: Path, build_kwargs: dict[str, Any], key: Any
) -> None:
    from invarlock_packs import ReportInput

    clean = build_kwargs["reports"][0]
    reports = [
        ReportInput(clean, model=f"m{i % 4}", edit="noop_clean", run=f"run{i}") for i in range(40)
    ]
    built = build_pack(tmp_path / "p", **{**build_kwargs, "reports": reports})
    parallel = verify_pack(built.path, workers=2)
    assert parallel.ok, parallel.problems
    assert parallel.reports_checked == 40
    report = built.path / "reports/m3/noop_clean/run39/evaluation.report.json"
    data = json.loads(report.read_text())
    data["primary_metric"]["ratio"] = 0.5
    report.write_text(json.dumps(data))
    reseal(built.path, key.private_key_path)
    for workers in (1, 2):
        result = verify_pack(built.path, workers=workers)
        assert result.exit_code == 7
        assert result.problems[0].startswith("reports.nested: reports/m3/noop_clean/run39/")
