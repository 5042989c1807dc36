"""A Veriscope capsule edited after its run no longer validates, even when edited consistently.

The attacks of issue #20 item 2, each through a real ``veriscope validate`` process with
``--strict-governance --strict-identity``: a FAIL run rewritten to PASS (gate decisions, counts,
final decision and first-fail marker all edited to agree), a gate control changed with every
hash reference updated, and the governance log cut short by its last line.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gate_helpers import make_capsule, veriscope_cmd

from veriscope_gate.capsule import FIRST_FAIL, RESULTS, SUMMARY, WINDOW_SIGNATURE
from veriscope_gate.governance import GOVERNANCE_LOG
from veriscope_gate.signature import window_signature_hash

pytestmark = pytest.mark.slow  # real subprocesses


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def _validate(outdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        veriscope_cmd("validate", str(outdir), "--strict-governance", "--strict-identity"),
        capture_output=True, text=True, check=False,
    )  # fmt: skip


@pytest.fixture
def failed_run(tmp_path: Path) -> Path:
    out = make_capsule(tmp_path / "run", shift_at=401)
    assert json.loads((out / SUMMARY).read_text())["final_decision"] == "fail"
    done = _validate(out)
    assert done.returncode == 0, done.stderr
    return out


def _rewrite_fail_as_pass(out: Path) -> None:
    def results(data: dict[str, Any]) -> None:
        for gate in data["gates"]:
            if gate["decision"] in ("fail", "warn"):
                gate.update(decision="pass", ok=True, warn=False)

    _edit(out / RESULTS, results)
    gates = json.loads((out / RESULTS).read_text())["gates"]
    evaluated = sum(1 for g in gates if g["decision"] != "skip")

    def summary(data: dict[str, Any]) -> None:
        data["counts"].update(evaluated=evaluated, fail=0, warn=0, **{"pass": evaluated})
        data.update(final_decision="pass", first_fail_iter=None)

    _edit(out / SUMMARY, summary)
    (out / FIRST_FAIL).unlink()


def test_fail_rewritten_as_pass_is_refused(failed_run: Path) -> None:
    _rewrite_fail_as_pass(failed_run)
    done = _validate(failed_run)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "results.json has digest" in done.stderr
    assert "results_summary.json has digest" in done.stderr


def test_changed_gate_control_with_updated_hash_refs_is_refused(failed_run: Path) -> None:
    def loosen(data: dict[str, Any]) -> None:
        data["gates"]["controls"]["eps"] = data["gates"]["controls"]["eps"] * 10

    _edit(failed_run / WINDOW_SIGNATURE, loosen)
    new_hash = window_signature_hash(json.loads((failed_run / WINDOW_SIGNATURE).read_text()))
    for name in (RESULTS, SUMMARY):
        _edit(failed_run / name, lambda d: d["window_signature_ref"].update(hash=new_hash))
    done = _validate(failed_run)
    assert done.returncode == 2
    assert "gate_controls_hash" in done.stderr
    assert "is not the hash" in done.stderr


def test_log_cut_short_by_its_last_line_is_refused(failed_run: Path) -> None:
    log = failed_run / GOVERNANCE_LOG
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:-1]))
    done = _validate(failed_run)
    assert done.returncode == 2
    assert "ends before the event that seals the results" in done.stderr


def test_summary_head_dropped_to_hide_a_truncation_is_refused(failed_run: Path) -> None:
    log = failed_run / GOVERNANCE_LOG
    log.write_text("".join(log.read_text().splitlines(keepends=True)[:-1]))
    _edit(failed_run / SUMMARY, lambda d: d.pop("governance_head"))
    done = _validate(failed_run)
    assert done.returncode == 2
    assert "missing contract key results_summary.json: governance_head" in done.stderr
