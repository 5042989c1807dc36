"""Canonical JSON, digests, atomic writes, the error hierarchy and the converter."""

from __future__ import annotations

import json
import math
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from invarlock_core.atomic import atomic_write_json, atomic_write_text, staged_directory
from invarlock_core.canonical import canonical_digest, canonical_json, file_sha256, sha256_hex
from invarlock_core.errors import (
    EXIT_FAIL,
    EXIT_INTERNAL,
    EXIT_USAGE,
    InvarlockError,
    ModelLoadError,
    SchemaError,
    UsageError,
    VerificationError,
)
from invarlock_core.serialization import structure, unstructure

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_canonical_json_round_trips_and_is_stable(value: object) -> None:
    data = canonical_json(value)
    assert json.loads(data) == value
    assert canonical_json(json.loads(data)) == data


@given(st.dictionaries(st.text(max_size=6), st.integers(), min_size=2, max_size=6))
def test_canonical_digest_ignores_key_order(mapping: dict[str, int]) -> None:
    reversed_mapping = dict(reversed(list(mapping.items())))
    assert canonical_digest(mapping) == canonical_digest(reversed_mapping)


@given(json_values, json_values)
def test_canonical_digest_separates_different_values(a: object, b: object) -> None:
    # Values that JSON tells apart (it cannot tell 1 from 1.0) must have different digests.
    if json.loads(canonical_json(a)) != json.loads(canonical_json(b)):
        assert canonical_digest(a) != canonical_digest(b)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, {"x": [math.nan]}])
def test_canonical_json_rejects_non_finite(bad: object) -> None:
    with pytest.raises(ValueError, match="Out of range"):
        canonical_json(bad)


def test_canonical_json_is_compact_sorted_utf8() -> None:
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()


def test_file_sha256_matches_bytes(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    payload = bytes(range(256)) * 5000
    path.write_bytes(payload)
    assert file_sha256(path) == sha256_hex(payload)


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.json"
    atomic_write_json(target, {"b": 2, "a": 1})
    assert json.loads(target.read_text()) == {"a": 1, "b": 2}
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]


def test_atomic_write_failure_keeps_old_content(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    atomic_write_text(target, "old")
    with pytest.raises(ValueError, match="Out of range"):
        atomic_write_json(target, {"x": math.nan})
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_staged_directory_is_all_or_nothing(tmp_path: Path) -> None:
    final = tmp_path / "pack"

    def build_and_fail() -> None:
        with staged_directory(final) as stage:
            (stage / "half.txt").write_text("partial")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        build_and_fail()
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []
    with staged_directory(final) as stage:
        (stage / "done.txt").write_text("ok")
    assert (final / "done.txt").read_text() == "ok"
    with pytest.raises(FileExistsError), staged_directory(final):
        pass
    with staged_directory(final, overwrite=True) as stage:
        (stage / "new.txt").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pack"]


def test_error_classes_carry_exit_codes_and_one_line_messages() -> None:
    assert UsageError("x").exit_code == EXIT_USAGE
    assert ModelLoadError("x").exit_code == EXIT_USAGE
    assert SchemaError("x").exit_code == EXIT_USAGE
    assert VerificationError("x").exit_code == EXIT_FAIL
    assert InvarlockError("x").exit_code == EXIT_INTERNAL
    assert str(UsageError("two\nlines  here")) == "two lines here"


@attrs.frozen
class _Point:
    path: Path
    values: tuple[int, ...]


def test_converter_round_trip_and_aggregated_errors() -> None:
    point = _Point(Path("/a/b"), (1, 2))
    data = unstructure(point)
    assert data == {"path": "/a/b", "values": [1, 2]}
    assert structure(data, _Point) == point
    with pytest.raises(SchemaError, match="invalid _Point"):
        structure({"path": "/a"}, _Point)
