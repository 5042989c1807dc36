"""The strict JSON reader refuses what two readers could disagree on, and never crashes.

Properties (hypothesis): any JSON value round-trips; a duplicate key at any depth is refused;
NaN/Infinity anywhere is refused; nesting beyond the bound is a one-line ``ValueError``, never a
``RecursionError``, however deep; oversized documents are refused before parsing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invarlock_core.errors import InputError
from invarlock_core.json_files import (
    MAX_JSON_DEPTH,
    StrictJSONError,
    parse_json_strict,
    read_json_object,
)
from invarlock_packs.safe_paths import parse_json_bytes
from veriscope_gate.errors import ArtifactError
from veriscope_gate.serialization import read_json_object as read_capsule_object

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_READERS = [parse_json_strict, parse_json_bytes]


@given(_values)
def test_valid_json_round_trips(value: object) -> None:
    text = json.dumps(value)
    assert parse_json_strict(text) == json.loads(text)
    assert parse_json_bytes(text.encode()) == json.loads(text)


@given(_values, st.text(max_size=8), st.integers(0, 5))
def test_a_duplicate_key_at_any_depth_is_refused(value: object, key: str, depth: int) -> None:
    inner = json.dumps(key)
    document = "{" + f"{inner}: 1, {inner}: {json.dumps(value)}" + "}"
    for _ in range(depth):
        document = '{"wrap": [' + document + "]}"
    for reader in _READERS:
        with pytest.raises(ValueError, match="duplicate key"):
            reader(document.encode())


@given(st.sampled_from(["NaN", "Infinity", "-Infinity"]), st.integers(0, 5))
def test_non_finite_numbers_are_refused(token: str, depth: int) -> None:
    document = '{"ratio": ' + token + "}"
    for _ in range(depth):
        document = "[" + document + "]"
    for reader in _READERS:
        with pytest.raises(ValueError, match="non-finite"):
            reader(document.encode())


@settings(deadline=None, max_examples=30)  # documents of up to 400k characters
@given(st.integers(MAX_JSON_DEPTH + 1, 200_000), st.sampled_from(["[", '{"a":']))
def test_any_depth_beyond_the_bound_is_a_value_error(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    document = opener * depth + "1" + closer * depth
    for reader in _READERS:
        with pytest.raises(ValueError, match="deeper"):
            reader(document.encode())


@given(st.text(alphabet="[]{}", max_size=40))
def test_brackets_inside_strings_do_not_count_towards_depth(brackets: str) -> None:
    document = json.dumps({"s": brackets * 10, "t": ['\\"' + brackets]})
    assert parse_json_strict(document) == json.loads(document)


def test_depth_at_the_bound_is_accepted() -> None:
    document = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert parse_json_strict(document) is not None


@given(_values, st.integers(0, 64))
def test_size_bound_is_exact(value: object, slack: int) -> None:
    raw = json.dumps(value).encode()
    assert parse_json_strict(raw, max_bytes=len(raw) + slack) == json.loads(raw)
    if raw:
        with pytest.raises(StrictJSONError, match="larger than"):
            parse_json_strict(raw + b" " * (slack + 1), max_bytes=len(raw) + slack)


@pytest.mark.parametrize(
    "content",
    [
        '{"verdict": "FAIL", "verdict": "PASS"}',
        '{"x": NaN}',
        "[" * 100_000 + "]" * 100_000,
        "{} {}",
    ],
)
def test_file_readers_give_one_line_typed_errors(tmp_path: Path, content: str) -> None:
    path = tmp_path / "doc.json"
    path.write_text(content)
    with pytest.raises(InputError) as core_error:
        read_json_object(path, what="report")
    with pytest.raises(ArtifactError) as capsule_error:
        read_capsule_object(path)
    for error in (core_error.value, capsule_error.value):
        assert "\n" not in str(error)
        assert "not valid JSON" in str(error)
