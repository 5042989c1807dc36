"""Pack verify refuses JSON that is not strict, with the documented code and no traceback.

A correctly *signed* manifest with a duplicate key (``"verdict":"FAIL","verdict":"PASS"``) is a
format failure (exit 4): the signature proves who wrote the bytes, not that every reader sees
the same values. Nested reports with NaN or 100k-deep nesting fail nested verification (exit 7).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from packhelpers import reseal

from invarlock_core.canonical import canonical_json
from invarlock_packs import verify_pack
from invarlock_packs.signing import load_private_key, sign_manifest

LIGHT = {"INVARLOCK_LOAD_PLUGINS": "invarlock_packs.commands"}


def _sign_raw_manifest(pack: Path, body: bytes, key: Any) -> None:
    (pack / "manifest.json").write_bytes(body)
    bundle = sign_manifest(body, load_private_key(key.private_key_path))
    (pack / "manifest.signature.json").write_bytes(canonical_json(bundle))


def test_signed_manifest_with_duplicate_verdict_is_a_format_failure(
    pack_copy: Path, key: Any, invarlock: Any
) -> None:
    text = (pack_copy / "manifest.json").read_text()
    assert '"verdict": "PASS"' in text
    forged = text.replace('"verdict": "PASS"', '"verdict": "FAIL", "verdict": "PASS"', 1).encode()
    _sign_raw_manifest(pack_copy, forged, key)
    result = verify_pack(pack_copy)
    assert result.exit_code == 4
    assert any("duplicate key 'verdict'" in p for p in result.problems)
    cli = invarlock("pack", "verify", str(pack_copy), env=LIGHT)
    assert cli.returncode == 4, cli.stderr
    assert "Traceback" not in cli.stderr + cli.stdout


@pytest.mark.parametrize(
    "content", ["[" * 100_000 + "]" * 100_000, '{"schema_version": 1, "x": NaN}', '{"a": Infinity}']
)
def test_manifest_nan_or_deep_is_exit_4(
    pack_copy: Path, key: Any, content: str, invarlock: Any
) -> None:
    _sign_raw_manifest(pack_copy, content.encode(), key)
    cli = invarlock("pack", "verify", str(pack_copy), env=LIGHT)
    assert cli.returncode == 4, cli.stdout + cli.stderr
    assert "Traceback" not in cli.stderr + cli.stdout


def test_signature_bundle_with_duplicate_keys_is_refused(pack_copy: Path) -> None:
    raw = (pack_copy / "manifest.signature.json").read_bytes()
    bundle = json.loads(raw)
    forged = raw.replace(b'{"algorithm"', b'{"algorithm":"rsa","algorithm"', 1)
    assert forged != raw
    assert json.loads(forged) == bundle
    (pack_copy / "manifest.signature.json").write_bytes(forged)
    result = verify_pack(pack_copy)
    assert result.exit_code == 5
    assert any("duplicate key" in p for p in result.problems)


@pytest.mark.parametrize(
    ("old", "new"),
    [('"ratio":', '"ratio": NaN, "x":'), ("{", "[" * 100_000 + "{")],
    ids=["nan", "deep"],
)
def test_nested_report_not_strict_json_is_exit_7(
    pack_copy: Path, key: Any, old: str, new: str, invarlock: Any
) -> None:
    report = next(pack_copy.glob("reports/**/evaluation.report.json"))
    text = report.read_text()
    assert old in text
    changed = text.replace(old, new, 1)
    if new.startswith("["):
        changed += "]" * 100_000
    report.write_text(changed)
    reseal(pack_copy, key.private_key_path)
    result = verify_pack(pack_copy, use_default_trust_store=False)
    assert result.exit_code == 7, result.problems
    cli = invarlock("pack", "verify", str(pack_copy), env=LIGHT)
    assert cli.returncode == 7, cli.stdout + cli.stderr
    assert "Traceback" not in cli.stderr + cli.stdout
