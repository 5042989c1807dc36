"""Capsules written by the reference Veriscope v0 tool validate and render here.

:func:`reference_capsule` writes a capsule the way the reference tool's published reviewer
examples are laid out (from the facts in issue #17, not with this package's writers): its
governance lines ``{schema_version, rev, event, ts_utc, actor, payload, prev_hash, entry_hash}``
with ``rev`` from 1, ``_v1`` event names, ``run_id``/``outdir`` in the payload, and
``entry_hash`` the SHA-256 hex of the canonical JSON of the line without it; and artifacts that
predate ``runner_signal``, ``first_fail_iter``, ``determinism_status``, ``dependencies``,
``env_capture.deny_exact``/``deny_regex``, with a relative ``run.outdir``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from gate_helpers import veriscope_cmd

pytestmark = pytest.mark.slow  # real subprocesses

RUN_ID = "ref-run-0001"
OUTDIR = "."  # the reference tool may record a relative outdir
MISSING = [
    "results.json: runner_signal",
    "results_summary.json: runner_signal",
    "results_summary.json: first_fail_iter",
    "results_summary.json: governance_head",
    "run_config_resolved.json: determinism_status",
    "run_config_resolved.json: dependencies",
    "run_config_resolved.json: env_capture.deny_exact",
    "run_config_resolved.json: env_capture.deny_regex",
]


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _write(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2))


def _governance_lines(events: list[tuple[str, dict[str, Any]]]) -> str:
    lines, prev = [], None
    for rev, (name, payload) in enumerate(events, start=1):
        line = {"schema_version": 1, "rev": rev, "event": name, "ts_utc": "2026-01-15T10:00:00Z",
                "actor": "veriscope", "payload": {**payload, "run_id": RUN_ID, "outdir": OUTDIR},
                "prev_hash": prev}  # fmt: skip
        line["entry_hash"] = hashlib.sha256(_canonical(line)).hexdigest()
        prev = line["entry_hash"]
        lines.append(json.dumps(line))
    return "\n".join(lines) + "\n"


def reference_capsule(root: Path) -> Path:
    """A passing two-gate capsule in the reference tool's layout."""
    root.mkdir(parents=True)
    signature = {"schema_version": 1, "created_ts_utc": "2026-01-15T10:00:00Z",
                 "transport": {"bins": 16}, "evidence": {"metric_interval": 10}}  # fmt: skip
    ref = {"hash": hashlib.sha256(_canonical({k: v for k, v in signature.items()
                                               if k != "created_ts_utc"})).hexdigest(),
           "path": "window_signature.json"}  # fmt: skip
    common = {"schema_version": 1, "run_id": RUN_ID, "window_signature_ref": ref,
              "profile": {"gate_preset": "tuned_v0"}, "run_status": "success",
              "runner_exit_code": 0, "started_ts_utc": "2026-01-15T10:00:00Z",
              "ended_ts_utc": "2026-01-15T10:45:00Z"}  # fmt: skip
    audit = {"evaluated": True, "reason": "pass", "policy": "either", "worst_DW": 0.05,
             "eps_eff": 0.16, "per_metric_tv": {"var_out_k": 0.05}, "evidence_total": 20,
             "min_evidence": 20}  # fmt: skip
    gates = [{"iter": 100, "decision": "pass", "audit": audit, "ok": True},
             {"iter": 200, "decision": "pass", "audit": audit, "ok": True}]  # fmt: skip
    _write(root / "window_signature.json", signature)
    _write(root / "results.json", {**common, "gates": gates, "metrics": []})
    _write(root / "results_summary.json", {**common, "final_decision": "pass",
           "counts": {"evaluated": 2, "skip": 0, "pass": 2, "warn": 0, "fail": 0}})  # fmt: skip
    _write(root / "run_config_resolved.json", {
        "schema_version": 1, "ts_utc": "2026-01-15T10:00:00Z",
        "package": {"name": "veriscope", "version": "0.1.0"}, "git_sha": None,
        "run": {"kind": "gpt", "run_id": RUN_ID, "outdir": OUTDIR},
        "argv": {"veriscope_argv": ["veriscope", "run", "gpt"]}, "env": {},
        "env_capture": {"allowlist": ["PATH"], "redactions_applied": False},
    })  # fmt: skip
    (root / "governance_log.jsonl").write_text(_governance_lines([
        ("run_started_v1", {"gate_preset": "tuned_v0"}),
        ("run_finished_v1", {"run_status": "success", "runner_exit_code": 0}),
    ]))  # fmt: skip
    return root


def _veriscope(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(veriscope_cmd(*args), capture_output=True, text=True, check=False)


@pytest.fixture
def capsule(tmp_path: Path) -> Path:
    return reference_capsule(tmp_path / "reference")


def test_older_capsule_names_every_missing_key_and_fails_by_default(capsule: Path) -> None:
    done = _veriscope("validate", str(capsule))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    for key in MISSING:
        assert f"missing contract key {key}" in done.stderr
    assert "run.outdir" in done.stderr


def test_allow_legacy_passes_with_one_warning_per_missing_key(capsule: Path) -> None:
    done = _veriscope("validate", str(capsule), "--allow-legacy", "--strict-governance")
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == len(MISSING) + 1  # and the relative run.outdir
    assert all(any(key in w for w in warnings) for key in MISSING)


def test_tampered_window_signature_fails_even_with_allow_legacy(capsule: Path) -> None:
    signature = json.loads((capsule / "window_signature.json").read_text())
    signature["transport"]["bins"] = 32
    _write(capsule / "window_signature.json", signature)
    done = _veriscope("validate", str(capsule), "--allow-legacy")
    assert done.returncode == 2
    assert "does not match the recomputed hash" in done.stderr


def test_broken_governance_chain_fails_even_with_allow_legacy(capsule: Path) -> None:
    log = capsule / "governance_log.jsonl"
    first, second = log.read_text().splitlines()
    event = json.loads(first)
    event["payload"]["gate_preset"] = "lenient"
    log.write_text(json.dumps(event) + "\n" + second + "\n")
    done = _veriscope("validate", str(capsule), "--allow-legacy")
    assert done.returncode == 2
    assert "hash does not match the event's content" in done.stderr


def test_governance_payload_must_name_this_run(capsule: Path) -> None:
    summary = json.loads((capsule / "results_summary.json").read_text())
    for name in ("results_summary.json", "results.json"):
        data = json.loads((capsule / name).read_text())
        data["run_id"] = "another-run"
        _write(capsule / name, data)
    config = json.loads((capsule / "run_config_resolved.json").read_text())
    config["run"]["run_id"] = "another-run"
    _write(capsule / "run_config_resolved.json", config)
    done = _veriscope("validate", str(capsule), "--allow-legacy")
    assert done.returncode == 2
    assert f"run_id {summary['run_id']!r} does not match 'another-run'" in done.stderr


@pytest.mark.parametrize("fmt", ["text", "md"])
def test_report_renders_a_legacy_capsule_with_a_legacy_line(capsule: Path, fmt: str) -> None:
    done = _veriscope("report", str(capsule), "--format", fmt)
    assert done.returncode == 0, done.stderr
    legacy = [line for line in done.stdout.splitlines() if "Legacy capsule: missing" in line]
    assert len(legacy) == 1
    assert all(key in legacy[0] for key in MISSING)
