"""Artifacts, schemas and ``veriscope validate``: every cross-artifact rule rejects with exit 2."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gate_helpers import make_capsule

from invarlock_core.schema_validation import schema_errors
from veriscope_gate.capsule import FIRST_FAIL, RESULTS, RUN_CONFIG, SUMMARY, WINDOW_SIGNATURE
from veriscope_gate.cli import main
from veriscope_gate.governance import GOVERNANCE_LOG
from veriscope_gate.signature import window_signature_hash
from veriscope_gate.validate import validate_capsule

Factory = Callable[..., Path]


def _edit(path: Path, fn: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_written_artifacts_match_their_schemas(capsule_factory: Factory) -> None:
    out = capsule_factory("schemas", shift_at=401)
    for name, schema in ((RESULTS, "results.v1"), (SUMMARY, "results_summary.v1"),
                         (WINDOW_SIGNATURE, "window_signature.v1"), (RUN_CONFIG, "run_config_resolved.v1")):
        assert schema_errors(json.loads((out / name).read_text()), schema, "veriscope_gate") == []
    for line in (out / GOVERNANCE_LOG).read_text().splitlines():
        assert schema_errors(json.loads(line), "governance_entry.v1", "veriscope_gate") == []
    summary = json.loads((out / SUMMARY).read_text())
    assert summary["final_decision"] == "fail"
    assert (out / FIRST_FAIL).read_text().strip() == str(summary["first_fail_iter"])
    assert validate_capsule(out).ok


def test_clean_capsule_is_valid_and_has_no_marker(tmp_path: Path, capsule_factory: Factory) -> None:
    out = make_capsule(tmp_path / "clean", iters=300)
    assert not (out / FIRST_FAIL).exists()
    assert main(["validate", str(out), "--strict-governance", "--require-governance", "--strict-identity"]) == 0
    moved = capsule_factory("moved")  # a copy: provenance names another directory
    assert main(["validate", str(moved)]) == 0
    assert main(["validate", str(moved), "--strict-identity"]) == 2


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda d: d.pop(key)


MUTATIONS: list[tuple[str, str, Callable[[dict[str, Any]], None], str]] = [
    ("schema_version", SUMMARY, lambda d: d.update(schema_version=2), "schema_version must be 1"),
    ("missing key", RESULTS, _drop("gates"), "'gates' is a required property"),
    ("run_id", RESULTS, lambda d: d.update(run_id="other"), "run_id differs"),
    ("signature ref", SUMMARY, lambda d: d["window_signature_ref"].update(hash="sha256:" + "0" * 64),
     "does not match the recomputed hash"),
    ("counts", SUMMARY, lambda d: d["counts"].update(skip=d["counts"]["skip"] + 1), "do not match the gate decisions"),
    ("evaluated sum", SUMMARY, lambda d: d["counts"].update(evaluated=99), "counts.evaluated must equal"),
    ("final decision", SUMMARY, lambda d: d.update(final_decision="pass"), "does not follow from the counts"),
    ("first fail null", SUMMARY, lambda d: d.update(first_fail_iter=None), "first_fail_iter must be an integer"),
    ("skip semantics", RESULTS, lambda d: d["gates"][0].update(decision="pass"), "audit.evaluated=false requires decision skip"),
    ("ok flag", RESULTS, lambda d: d["gates"][-1].update(ok=False), "contradicts decision"),
    ("run status", SUMMARY, lambda d: d.update(run_status="success", runner_exit_code=3), "runner_exit_code is 3"),
    ("decision enum", RESULTS, lambda d: d["gates"][-1].update(decision="maybe"), "'maybe' is not one of"),
    ("relative outdir", RUN_CONFIG, lambda d: d["run"].update(outdir="rel/dir"), "must be an absolute path"),
]


@pytest.mark.parametrize(("label", "name", "mutate", "message"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_validate_rejects_each_violation(capsule_factory: Factory, capsys: pytest.CaptureFixture[str],
                                         label: str, name: str, mutate: Callable[[dict[str, Any]], None],
                                         message: str) -> None:
    out = capsule_factory(label.replace(" ", "-"), shift_at=401)
    _edit(out / name, mutate)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["validate", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.strip().splitlines()[-1].startswith("error: validation failed:")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # read-only


def test_marker_file_must_match(capsule_factory: Factory) -> None:
    out = capsule_factory("marker", shift_at=401)
    (out / FIRST_FAIL).unlink()
    assert any("must exist" in p for p in validate_capsule(out).problems)
    clean = capsule_factory("marker-clean")
    (clean / FIRST_FAIL).write_text("5\n")
    assert any("must not exist" in p for p in validate_capsule(clean).problems)


def test_created_ts_must_be_valid_utc(capsule_factory: Factory) -> None:
    out = capsule_factory("ts")
    _edit(out / WINDOW_SIGNATURE, lambda d: d.update(created_ts_utc="yesterday"))
    assert any("created_ts_utc must be" in p for p in validate_capsule(out).problems)


def test_signature_hash_excludes_only_a_valid_timestamp(capsule_factory: Factory) -> None:
    out = capsule_factory("hash")
    sig = json.loads((out / WINDOW_SIGNATURE).read_text())
    h = window_signature_hash(sig)
    assert window_signature_hash({**sig, "created_ts_utc": "2030-01-01T00:00:00Z"}) == h
    assert window_signature_hash({**sig, "extra": 1}) != h
    # other implementations may spell the ref without the prefix (and write no governance log)
    (out / GOVERNANCE_LOG).unlink()
    _edit(out / SUMMARY, lambda d: d.pop("governance_head"))
    _edit(out / SUMMARY, lambda d: d["window_signature_ref"].update(hash=h.removeprefix("sha256:")))
    _edit(out / RESULTS, lambda d: d["window_signature_ref"].update(hash=h.removeprefix("sha256:")))
    assert validate_capsule(out).ok


def test_governance_chain_tampering_and_identity(capsule_factory: Factory) -> None:
    out = capsule_factory("gov")
    lines = (out / GOVERNANCE_LOG).read_text().splitlines()
    event = json.loads(lines[0])
    event["payload"]["gate_preset"] = "tampered"
    (out / GOVERNANCE_LOG).write_text("\n".join([json.dumps(event), *lines[1:]]) + "\n")
    problems = validate_capsule(out).problems
    assert any("hash does not match" in p for p in problems)
    other = capsule_factory("gov-id")
    _edit(other / RUN_CONFIG, lambda d: d["run"].update(outdir="/elsewhere"))
    problems = validate_capsule(other).problems
    assert any("outdir '/elsewhere'" in p or "does not match '/elsewhere'" in p for p in problems)


def test_require_governance_and_legacy(capsule_factory: Factory) -> None:
    out = capsule_factory("nogov")
    (out / GOVERNANCE_LOG).unlink()
    assert "records its head" in " ".join(validate_capsule(out).problems)  # the log was deleted
    _edit(out / SUMMARY, lambda d: d.update(governance_head=None))  # a run that kept no log
    assert validate_capsule(out).ok
    assert not validate_capsule(out, require_governance=True).ok
    legacy = capsule_factory("legacy")
    run_id = json.loads((legacy / SUMMARY).read_text())["run_id"]
    outdir = json.loads((legacy / RUN_CONFIG).read_text())["run"]["outdir"]
    (legacy / GOVERNANCE_LOG).write_text(json.dumps({"event": "run_started", "run_id": run_id, "outdir": outdir}) + "\n")
    assert not validate_capsule(legacy).ok
    assert validate_capsule(legacy, allow_legacy_governance=True).ok
    assert not validate_capsule(legacy, allow_legacy_governance=True, strict_governance=True).ok


def test_partial_capsule_without_results_is_valid(capsule_factory: Factory) -> None:
    out = capsule_factory("partial", partial=True)
    (out / RESULTS).unlink()
    report = validate_capsule(out)
    assert report.ok
    assert report.partial
    full = capsule_factory("nonpartial")
    (full / RESULTS).unlink()
    assert any("results.json is missing" in p for p in validate_capsule(full).problems)


def test_missing_outdir_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main(["validate", str(tmp_path)]) == 2
    assert "results_summary.json is missing" in capsys.readouterr().err


def test_foreign_capsule_from_the_published_contract_validates_and_reports(tmp_path: Path) -> None:
    """A minimal capsule another implementation could write (no Veriscope extras) is accepted."""
    sig = {"schema_version": 1, "created_ts_utc": "2026-01-15T10:00:00Z", "transport": {"bins": 16}}
    h = window_signature_hash(sig)
    common = {"schema_version": 1, "run_id": "abc123", "window_signature_ref": {"hash": h, "path": WINDOW_SIGNATURE},
              "profile": {"gate_preset": "tuned_v0"}, "run_status": "success", "runner_exit_code": 0,
              "runner_signal": None, "started_ts_utc": "2026-01-15T10:00:00Z", "ended_ts_utc": "2026-01-15T10:45:00Z"}
    audit = {"evaluated": True, "reason": "pass", "policy": "either", "worst_DW": 0.05, "eps_eff": 0.1675,
             "per_metric_tv": {"var_out_k": 0.05}, "evidence_total": 20, "min_evidence": 20}
    gates = [{"iter": 1100, "decision": "pass", "audit": audit, "ok": True},
             {"iter": 1200, "decision": "skip", "audit": {**audit, "evaluated": False, "reason": "insufficient_evidence",
                                                          "worst_DW": None, "eps_eff": None, "per_metric_tv": {}}}]
    (tmp_path / WINDOW_SIGNATURE).write_text(json.dumps(sig))
    (tmp_path / RESULTS).write_text(json.dumps({**common, "gates": gates, "metrics": []}))
    (tmp_path / SUMMARY).write_text(json.dumps({**common, "counts": {"evaluated": 1, "skip": 1, "pass": 1, "warn": 0, "fail": 0},
                                                "final_decision": "pass", "first_fail_iter": None}))
    assert main(["validate", str(tmp_path)]) == 0
    assert main(["report", str(tmp_path), "--format", "md"]) == 0
