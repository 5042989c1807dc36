"""Reading JSON files: every failure is one line with the right exception class."""

from __future__ import annotations

from pathlib import Path

import pytest

from invarlock_core.errors import ConfigError, InputError
from invarlock_core.json_files import read_json, read_json_object


def test_reads_values_and_objects(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"x": [1, 2]}')
    (tmp_path / "b.json").write_text("[1]")
    assert read_json(tmp_path / "a.json", what="thing") == {"x": [1, 2]}
    assert read_json(tmp_path / "b.json", what="thing") == [1]
    assert read_json_object(tmp_path / "a.json", what="thing") == {"x": [1, 2]}
    with pytest.raises(InputError, match="must hold a JSON object, found list"):
        read_json_object(tmp_path / "b.json", what="thing")


def test_failures_name_the_file_and_use_the_given_class(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match=r"preset .*missing\.json does not exist"):
        read_json(tmp_path / "missing.json", what="preset", error=ConfigError)
    with pytest.raises(InputError, match=r"bad\.json is not valid JSON"):
        read_json(tmp_path / "bad.json", what="report")
    with pytest.raises(InputError, match="cannot read report"):
        read_json(tmp_path / "bin.json", what="report")
    with pytest.raises(InputError, match="cannot read report"):
        read_json(tmp_path, what="report")
