"""Evidence packs sealed by another evidence-pack-v1 producer verify on what can be verified.

The producer below is written from the published format facts (seed 003) with nothing but the
standard library's ``json`` and ``cryptography``: ``checksums.sha256`` in ``sha256sum`` form, a
manifest binding it by digest, and a detached Ed25519 bundle written with plain
``json.dumps(..., sort_keys=True)`` (separators ``", "`` and ``": "``). It does not use our builder.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invarlock_packs import verify_pack

LIGHT = {"INVARLOCK_LOAD_PLUGINS": "invarlock_packs.commands"}
FOREIGN_REPORT = {"schema": "other-tool/eval-report-v3", "verdict": "PASS", "ppl_ratio": 1.01}


def _produce(pack: Path, reports: dict[str, bytes], key: Ed25519PrivateKey) -> dict[str, Any]:
    """Seal and sign ``reports`` (``{relpath: bytes}``) the way another producer would."""
    files = {**reports, "results/final_verdict.json": b'{"verdict": "PASS"}\n'}
    for rel, data in files.items():
        (pack / rel).parent.mkdir(parents=True, exist_ok=True)
        (pack / rel).write_bytes(data)
    checksums = "".join(
        f"{hashlib.sha256(files[rel]).hexdigest()}  {rel}\n" for rel in sorted(files)
    ).encode()
    (pack / "checksums.sha256").write_bytes(checksums)
    raw_public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    signer = "sha256:" + hashlib.sha256(raw_public).hexdigest()
    manifest = {
        "format": "evidence-pack-v1",
        "checksums_sha256": "checksums.sha256",
        "checksums_sha256_digest": hashlib.sha256(checksums).hexdigest(),
        "signing_key_fingerprint": signer,
        "builder": {"name": "other-packer", "version": "2.1"},
    }
    body = json.dumps(manifest, sort_keys=True, indent=2).encode()
    (pack / "manifest.json").write_bytes(body)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    bundle = {
        "format": "evidence-pack-signature-v1",
        "algorithm": "ed25519",
        "signing_key_fingerprint": signer,
        "public_key": {"encoding": "pem", "value": pem.decode()},
        "signature": {"encoding": "base64", "value": base64.b64encode(key.sign(body)).decode()},
    }
    (pack / "manifest.signature.json").write_text(json.dumps(bundle, sort_keys=True))
    return bundle


@pytest.fixture(scope="module")
def foreign_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def foreign_pack(tmp_path: Path, foreign_key: Ed25519PrivateKey) -> Path:
    pack = tmp_path / "foreign"
    _produce(
        pack,
        {
            "reports/m/e/run1/report.json": json.dumps(FOREIGN_REPORT).encode() + b"\n",
            "reports/m/e/run1/evaluation.report.json": json.dumps(FOREIGN_REPORT).encode(),
        },
        foreign_key,
    )
    return pack


@pytest.fixture
def own_report_pack(
    tmp_path: Path, foreign_key: Ed25519PrivateKey, real_reports: dict[str, Path]
) -> Path:
    pack = tmp_path / "foreign-with-ours"
    report = real_reports["pass"].read_bytes()
    _produce(pack, {"reports/m/e/run1/evaluation.report.json": report}, foreign_key)
    return pack


def test_foreign_report_fails_nested_verification_only(foreign_pack: Path, invarlock: Any) -> None:
    result = verify_pack(foreign_pack, use_default_trust_store=False)
    assert result.exit_code == 7
    failed = [c for c in result.checks if not c.ok]
    assert [c.name for c in failed] == ["reports.nested"]
    assert "not a report this verifier can recompute: schema" in failed[0].detail
    assert {"signature.valid", "integrity.checksums"} <= {c.name for c in result.checks if c.ok}
    cli = invarlock("pack", "verify", "--json", str(foreign_pack), env=LIGHT)
    assert cli.returncode == 7, cli.stderr
    checks = {c["name"]: c["ok"] for c in json.loads(cli.stdout)["checks"]}
    assert checks["signature.valid"] is True
    assert checks["integrity.checksums"] is True
    assert checks["reports.nested"] is False


def test_our_report_in_a_foreign_pack_verifies(own_report_pack: Path, invarlock: Any) -> None:
    assert verify_pack(own_report_pack).ok
    assert invarlock("pack", "verify", str(own_report_pack), env=LIGHT).returncode == 0


def test_a_changed_report_byte_is_integrity_and_a_changed_manifest_is_signature(
    own_report_pack: Path, tmp_path: Path
) -> None:
    tampered = Path(shutil.copytree(own_report_pack, tmp_path / "t1"))
    report = tampered / "reports/m/e/run1/evaluation.report.json"
    data = bytearray(report.read_bytes())
    data[10] ^= 0x01
    report.write_bytes(bytes(data))
    assert verify_pack(tampered).exit_code == 6
    manifest = own_report_pack / "manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b"2.1", b"2.2"))
    assert verify_pack(own_report_pack).exit_code == 5


_layouts = st.fixed_dictionaries(
    {
        "sort_keys": st.booleans(),
        "indent": st.none() | st.integers(0, 4) | st.just("\t"),
        "ensure_ascii": st.booleans(),
        "separators": st.sampled_from([None, (",", ":"), (", ", ": "), (" ,", " : ")]),
    }
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(layout=_layouts, order=st.randoms(use_true_random=False))
def test_any_reserialisation_of_a_valid_bundle_verifies(
    own_report_pack: Path, layout: dict[str, Any], order: Any
) -> None:
    path = own_report_pack / "manifest.signature.json"
    bundle = json.loads(path.read_bytes())
    keys = list(bundle)
    order.shuffle(keys)
    path.write_text(
        json.dumps({k: bundle[k] for k in keys}, **layout) + order.choice(["", "\n", "  \n"])
    )
    result = verify_pack(own_report_pack, report_assurance="off")
    assert result.ok, result.problems


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda b, raw: raw + " {}", "Extra data"),
        (
            lambda b, raw: raw.replace(
                '"algorithm": "ed25519"', '"algorithm": "ed25519", "algorithm": "ed25519"'
            ),
            "duplicate key",
        ),
        (lambda b, raw: json.dumps({**b, "algorithm": "ed448"}), "malformed"),
        (lambda b, raw: json.dumps({**b, "format": "sigstore-v1"}), "malformed"),
        (
            lambda b, raw: json.dumps({**b, "signing_key_fingerprint": "sha256:" + "0" * 64}),
            "fingerprint",
        ),
        (
            lambda b, raw: json.dumps(
                {
                    **b,
                    "signature": {
                        "encoding": "base64",
                        "value": base64.b64encode(b"x" * 64).decode(),
                    },
                }
            ),
            "does not match",
        ),
    ],
    ids=["trailing-data", "duplicate-key", "algorithm", "format", "fingerprint", "bad-signature"],
)
def test_bundles_that_must_still_be_refused(
    own_report_pack: Path, change: Any, problem: str
) -> None:
    path = own_report_pack / "manifest.signature.json"
    raw = path.read_text()
    path.write_text(change(json.loads(raw), raw))
    result = verify_pack(own_report_pack, report_assurance="off")
    assert result.exit_code == 5
    assert problem in " ".join(result.problems)


def test_our_builder_still_writes_canonical_bundles(sealed_pack: Path) -> None:
    from invarlock_core.canonical import canonical_json

    raw = (sealed_pack / "manifest.signature.json").read_bytes()
    assert canonical_json(json.loads(raw)) == raw
