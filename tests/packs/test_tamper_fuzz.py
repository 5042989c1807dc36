"""Tamper fuzz: no change to a sealed pack is ever accepted, and each fails with the right code.

Flipping any byte of any file, deleting any file, adding any file (strict mode) and editing any
manifest field all fail; the expected exit code is derived from which file changed.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invarlock_core.schema_validation import schema_errors
from invarlock_packs import verify_pack
from invarlock_packs.manifest_contents import manifest_bytes
from invarlock_packs.safe_paths import parse_json_bytes

# Modest by default for CI time; INVARLOCK_FUZZ_EXAMPLES=2000 for a deeper local run.
FUZZ = settings(
    max_examples=int(os.environ.get("INVARLOCK_FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def fuzz_pack(sealed_pack: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy per module; every example restores what it changed."""
    return Path(shutil.copytree(sealed_pack, tmp_path_factory.mktemp("fuzz") / "pack"))


def _files(pack: Path) -> list[str]:
    return sorted(p.relative_to(pack).as_posix() for p in pack.rglob("*") if p.is_file())


def _manifest_code(data: bytes) -> int:
    """4 when the changed manifest is unreadable or off-schema, else 5 (the signature breaks)."""
    try:
        manifest = parse_json_bytes(data)
    except ValueError:
        return 4
    if not isinstance(manifest, dict) or manifest.get("format") != "evidence-pack-v1":
        return 4
    return 4 if schema_errors(manifest, "evidence-pack-manifest", "invarlock_packs") else 5


def _expected(rel: str, changed: bytes) -> int:
    if rel == "manifest.json":
        return _manifest_code(changed)
    return 5 if rel == "manifest.signature.json" else 6


def test_the_fuzz_pack_starts_clean(fuzz_pack: Path) -> None:
    assert verify_pack(fuzz_pack, strict=True, use_default_trust_store=False).ok


@FUZZ
@given(data=st.data())
def test_flipping_any_byte_of_any_file_is_detected(fuzz_pack: Path, data: st.DataObject) -> None:
    rel = data.draw(st.sampled_from(_files(fuzz_pack)), label="file")
    path = fuzz_pack / rel
    original = path.read_bytes()
    position = data.draw(st.integers(0, len(original) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="xor mask")
    changed = bytearray(original)
    changed[position] ^= mask
    path.write_bytes(bytes(changed))
    try:
        result = verify_pack(fuzz_pack, use_default_trust_store=False)
    finally:
        path.write_bytes(original)
    assert not result.ok
    assert result.exit_code == _expected(rel, bytes(changed)), result.problems


@pytest.mark.parametrize(
    "which", ["manifest.json", "checksums.sha256", "manifest.signature.json", "content"]
)
def test_deleting_any_file_is_detected(fuzz_pack: Path, which: str) -> None:
    targets = (
        [which]
        if which != "content"
        else [
            f
            for f in _files(fuzz_pack)
            if f not in {"manifest.json", "checksums.sha256", "manifest.signature.json"}
        ]
    )
    expected = {"manifest.json": 3, "checksums.sha256": 3, "manifest.signature.json": 5}.get(
        which, 6
    )
    for rel in targets:
        path = fuzz_pack / rel
        original = path.read_bytes()
        path.unlink()
        try:
            result = verify_pack(fuzz_pack, use_default_trust_store=False)
        finally:
            path.write_bytes(original)
        assert result.exit_code == expected, (rel, result.problems)


_NAME = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-",
    min_size=1,
    max_size=24,
)


@FUZZ
@given(data=st.data())
def test_adding_any_file_fails_strict_verification(fuzz_pack: Path, data: st.DataObject) -> None:
    directories = sorted({str(Path(f).parent) for f in _files(fuzz_pack)})
    directory = data.draw(st.sampled_from(directories), label="directory")
    name = data.draw(_NAME.filter(lambda n: n not in {".", ".."}), label="name")
    target = fuzz_pack / directory / name
    if target.exists():
        return
    target.write_bytes(data.draw(st.binary(max_size=64), label="content"))
    try:
        strict = verify_pack(fuzz_pack, strict=True, use_default_trust_store=False)
    finally:
        target.unlink()
    assert strict.exit_code == 6, strict.problems


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list) and node:
        for index, value in enumerate(node):
            yield from _leaves(value, (*path, index))
    else:
        yield path


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.text(max_size=12),
    st.sampled_from(["high", "PASS", "FAIL", "sha256:" + "0" * 64, "0" * 64]),
)


@FUZZ
@given(data=st.data())
def test_editing_any_manifest_field_is_detected(fuzz_pack: Path, data: st.DataObject) -> None:
    path = fuzz_pack / "manifest.json"
    original = path.read_bytes()
    manifest = json.loads(original)
    leaf = data.draw(st.sampled_from(sorted(_leaves(manifest), key=repr)), label="field")
    value = data.draw(_VALUES, label="value")
    node = manifest
    for part in leaf[:-1]:
        node = node[part]
    if node[leaf[-1]] == value and type(node[leaf[-1]]) is type(value):
        return
    node[leaf[-1]] = value
    changed = manifest_bytes(manifest)
    path.write_bytes(changed)
    try:
        result = verify_pack(fuzz_pack, use_default_trust_store=False)
    finally:
        path.write_bytes(original)
    assert not result.ok
    assert result.exit_code == _manifest_code(changed), result.problems
