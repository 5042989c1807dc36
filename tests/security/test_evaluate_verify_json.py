"""``invarlock verify`` on hostile JSON: NaN/Infinity and 100k-deep nesting are exit 2 with one
clear problem, never a RecursionError (exit 3)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invarlock_core import json_files

STRICT = hasattr(json_files, "parse_json_strict")


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000 + "]" * 100_000, '{"a": ' * 100_000 + "1" + "}" * 100_000, '{"verdict": NaN}', '{"x": -Infinity}'],
    ids=["deep-array", "deep-object", "nan", "infinity"],
)
def test_verify_refuses_hostile_json_with_exit_2(
    invarlock: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path, text: str
) -> None:
    if not STRICT and len(text) > 1000:
        pytest.skip("needs the strict JSON reader of invarlock_core.json_files (merged from the trust branch)")
    report = tmp_path / "evaluation.report.json"
    report.write_text(text)
    result = invarlock("verify", report)
    assert result.returncode == 2, result.stderr[-500:]
    assert "RecursionError" not in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("INVALID  ")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.sampled_from(["NaN", "Infinity", "-Infinity"]),
    st.sampled_from(["verdict", "reasons", "primary_metric", "nested"]),
)
def test_non_finite_numbers_are_invalid_reports(tmp_path: Path, constant: str, key: str) -> None:
    from invarlock_core.report.verification import verify_report_file

    report = tmp_path / "evaluation.report.json"
    value = f'{{"deeper": [{constant}]}}' if key == "nested" else constant
    report.write_text(f'{{"{key}": {value}}}')
    result = verify_report_file(report)
    assert not result.ok
    assert result.exit_code == 2
