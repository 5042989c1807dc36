"""``veriscope validate``: every schema and cross-artifact rule of the v1 contract, read-only.

:func:`validate_capsule` collects **all** problems (it never stops at the first) and never writes.
Beyond the contract's cross-artifact rules it rechecks what the capsule's own records vouch for: the governance
log's seal (digests of ``results.json`` and ``results_summary.json``, found right after the
summary's ``governance_head``) and the gate controls hash (recomputed from the controls stored in
``window_signature.json``). Reference v0 capsules that lack contract keys fail with every missing
key named, or pass with one warning each under ``allow_legacy`` (:mod:`veriscope_gate.legacy`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs

from invarlock_core.canonical import canonical_digest, prefixed
from veriscope_gate.capsule import (
    FIRST_FAIL,
    MANUAL,
    RESULTS,
    RUN_CONFIG,
    SUMMARY,
    WINDOW_SIGNATURE,
)
from veriscope_gate.envcapture import REDACTED
from veriscope_gate.errors import ArtifactError
from veriscope_gate.governance import check_log, check_seal
from veriscope_gate.legacy import GOVERNANCE_HEAD, contract_errors
from veriscope_gate.records import count_decisions, final_decision, flags_for
from veriscope_gate.serialization import as_object, read_json_object
from veriscope_gate.signature import same_hash, window_signature_hash

__all__ = ["ValidationReport", "validate_capsule"]

_PKG = "veriscope_gate"


@attrs.frozen
class ValidationReport:
    """Problems (each one makes the capsule invalid), the partial flag and governance state."""

    outdir: str
    problems: list[str]
    partial: bool
    governance: str
    warnings: list[str] = attrs.field(factory=list)
    """One line per tolerated legacy absence (``allow_legacy``)."""

    @property
    def ok(self) -> bool:
        return not self.problems


def _load(
    outdir: Path, name: str, schema: str, problems: list[str], missing: list[str]
) -> dict[str, Any] | None:
    path = outdir / name
    if not path.exists():
        return None
    try:
        data = read_json_object(path)
    except ArtifactError as exc:
        problems.append(str(exc))
        return None
    if data.get("schema_version") != 1:
        problems.append(f"{name}: schema_version must be 1, found {data.get('schema_version')!r}")
    errors, absent = contract_errors(name, data, schema)
    problems.extend(f"{name}: {p}" for p in errors)
    missing.extend(f"{name}: {key}" for key in absent)
    return data


def _check_controls(
    signature: dict[str, Any] | None, records: dict[str, dict[str, Any] | None], problems: list[str]
) -> None:
    """The stored gate controls hash must be the hash of the stored controls, everywhere."""
    gates = as_object(signature.get("gates")) if signature else {}
    controls = gates.get("controls")
    if not isinstance(controls, dict):
        return
    try:
        recomputed = prefixed(canonical_digest(controls))
    except (TypeError, ValueError):
        problems.append(f"{WINDOW_SIGNATURE}: gates.controls cannot be hashed canonically")
        return
    stored = {WINDOW_SIGNATURE: gates.get("gate_controls_hash")}
    stored.update({name: data.get("gate_controls_hash") for name, data in records.items() if data})
    for name, value in stored.items():
        if isinstance(value, str) and not same_hash(value, recomputed):
            problems.append(f"{name}: gate_controls_hash {value} is not the hash {recomputed} "
                            f"of the controls in {WINDOW_SIGNATURE}")


def _check_gates(results: dict[str, Any], problems: list[str]) -> list[str]:
    decisions: list[str] = []
    for i, gate in enumerate(results.get("gates") or []):
        if not isinstance(gate, dict):
            continue
        where = f"results.json gates[{i}] (iter {gate.get('iter')})"
        decision = gate.get("decision")
        audit = as_object(gate.get("audit"))
        evaluated = audit.get("evaluated")
        if isinstance(decision, str):
            decisions.append(decision)
        if evaluated is False and decision != "skip":
            problems.append(f"{where}: audit.evaluated=false requires decision skip, found {decision!r}")
        if evaluated is True and decision == "skip":
            problems.append(f"{where}: decision skip requires audit.evaluated=false")
        ok_expected, warn_expected = flags_for(str(decision))
        if "ok" in gate and gate["ok"] is not None and gate["ok"] != ok_expected:
            problems.append(f"{where}: ok={gate['ok']} contradicts decision {decision!r}")
        if ("warn" in gate and gate["warn"] is not None and warn_expected is not None
                and gate["warn"] != warn_expected):
            problems.append(f"{where}: warn={gate['warn']} contradicts decision {decision!r}")
    return decisions


def _check_status(name: str, data: dict[str, Any], problems: list[str]) -> None:
    status, rc = data.get("run_status"), data.get("runner_exit_code")
    if status == "success" and rc not in (0, None):
        problems.append(f"{name}: run_status success but runner_exit_code is {rc}")
    if status == "user_code_failure" and rc == 0:
        problems.append(f"{name}: run_status user_code_failure but runner_exit_code is 0")


def _check_run_config(cfg: dict[str, Any], problems: list[str], legacy: list[str] | None) -> None:
    env = as_object(cfg.get("env"))
    capture = as_object(cfg.get("env_capture"))
    deny_exact = [d for d in capture.get("deny_exact", []) if isinstance(d, str)]
    patterns = []
    for rule in capture.get("deny_regex", []):
        try:
            patterns.append(re.compile(str(rule)))
        except re.error:
            problems.append(f"{RUN_CONFIG}: env_capture.deny_regex {rule!r} is not a valid regex")
    matched = False
    for key, value in env.items():
        if key in deny_exact or any(p.search(key) for p in patterns):
            matched = True
            if value != REDACTED:
                problems.append(f"{RUN_CONFIG}: env[{key!r}] matches a deny rule but is not redacted")
    if matched and capture.get("redactions_applied") is False:
        problems.append(f"{RUN_CONFIG}: env_capture.redactions_applied=false but deny rules matched")
    if isinstance(cfg.get("run"), dict):
        outdir = cfg["run"].get("outdir")
        if isinstance(outdir, str) and not Path(outdir).is_absolute():
            if legacy is None:
                problems.append(f"{RUN_CONFIG}: run.outdir must be an absolute path, found {outdir!r}")
            else:
                legacy.append(f"{RUN_CONFIG}: run.outdir (relative: {outdir!r})")


def validate_capsule(
    outdir: str | Path,
    *,
    strict_governance: bool = False,
    require_governance: bool = False,
    strict_identity: bool = False,
    allow_legacy_governance: bool = False,
    allow_legacy: bool = False,
) -> ValidationReport:
    """Validate the capsule in ``outdir`` against the v1 contract (read-only).

    ``allow_legacy`` accepts reference v0 capsules that lack contract keys (one warning per key,
    absent nullable keys read as null); every other check still applies in full.
    """
    root = Path(outdir)
    problems: list[str] = []
    missing: list[str] = []
    if not root.is_dir():
        return ValidationReport(str(root), [f"{root} is not a directory"], False, "absent")
    signature = _load(root, WINDOW_SIGNATURE, "window_signature.v1", problems, missing)
    summary = _load(root, SUMMARY, "results_summary.v1", problems, missing)
    results = _load(root, RESULTS, "results.v1", problems, missing)
    run_config = _load(root, RUN_CONFIG, "run_config_resolved.v1", problems, missing)
    manual = _load(root, MANUAL, "manual_judgement.v1", problems, missing)
    _check_controls(signature, {RESULTS: results, SUMMARY: summary}, problems)
    partial = bool(summary and summary.get("partial") is True)
    if signature is None and not (root / WINDOW_SIGNATURE).exists():
        problems.append(f"{WINDOW_SIGNATURE} is missing")
    if summary is None and not (root / SUMMARY).exists():
        problems.append(f"{SUMMARY} is missing (interrupted before finalisation?)")
    if results is None and not (root / RESULTS).exists() and not partial:
        problems.append(f"{RESULTS} is missing (required unless results_summary.partial=true)")

    # run_id join key
    ids: dict[str, Any] = {}
    for name, d in ((SUMMARY, summary), (RESULTS, results), (MANUAL, manual)):
        if d is not None:
            ids[name] = d.get("run_id")
    if run_config is not None and isinstance(run_config.get("run"), dict):
        ids[RUN_CONFIG] = run_config["run"].get("run_id")
    distinct = {v for v in ids.values() if v is not None}
    if len(distinct) > 1:
        problems.append("run_id differs across artifacts: "
                        + ", ".join(f"{k}={v!r}" for k, v in sorted(ids.items())))
    run_id = next(iter(distinct)) if len(distinct) == 1 else None

    # window signature hash
    if signature is not None:
        try:
            recomputed: str | None = window_signature_hash(signature)
        except ArtifactError as exc:
            problems.append(str(exc))
            recomputed = None
        for name, data in ((RESULTS, results), (SUMMARY, summary)):
            ref = data.get("window_signature_ref") if data else None
            if recomputed and isinstance(ref, dict) and isinstance(ref.get("hash"), str) \
                    and not same_hash(ref["hash"], recomputed):
                problems.append(f"{name}: window_signature_ref.hash {ref['hash']} does not match "
                                f"the recomputed hash {recomputed} of {WINDOW_SIGNATURE}")

    # counts, final decision, first fail
    if summary is not None:
        _check_status(SUMMARY, summary, problems)
        counts = summary.get("counts") if isinstance(summary.get("counts"), dict) else {}
        if counts and all(isinstance(counts.get(k), int) for k in ("evaluated", "pass", "warn", "fail", "skip")):
            if counts["evaluated"] != counts["pass"] + counts["warn"] + counts["fail"]:
                problems.append(f"{SUMMARY}: counts.evaluated must equal pass + warn + fail")
            tally = (["fail"] * counts["fail"] + ["warn"] * counts["warn"]
                     + ["pass"] * counts["pass"] + ["skip"] * counts["skip"])
            if summary.get("final_decision") != final_decision(tally):
                problems.append(f"{SUMMARY}: final_decision {summary.get('final_decision')!r} does not "
                                f"follow from the counts (expected {final_decision(tally)!r})")
            ffi = summary.get("first_fail_iter")
            if counts["fail"] > 0 and not isinstance(ffi, int):
                problems.append(f"{SUMMARY}: first_fail_iter must be an integer when counts.fail > 0")
            if counts["fail"] == 0 and ffi is not None:
                problems.append(f"{SUMMARY}: first_fail_iter must be null when counts.fail == 0")
        marker = root / FIRST_FAIL
        ffi = summary.get("first_fail_iter")
        if ffi is not None and not marker.exists():
            problems.append(f"{FIRST_FAIL} must exist because first_fail_iter is {ffi}")
        if ffi is None and marker.exists():
            problems.append(f"{FIRST_FAIL} must not exist because first_fail_iter is null")
        if ffi is not None and marker.exists():
            text = marker.read_text(encoding="utf-8", errors="replace").strip()
            if text != str(ffi):
                problems.append(f"{FIRST_FAIL} says {text!r} but first_fail_iter is {ffi}")
        if results is not None:
            decisions = _check_gates(results, problems)
            actual = count_decisions(decisions).as_dict()
            if counts and any(counts.get(k) != v for k, v in actual.items()):
                problems.append(f"{SUMMARY}: counts {dict(sorted(counts.items()))} do not match the "
                                f"gate decisions in {RESULTS} {dict(sorted(actual.items()))}")
            first = next((g.get("iter") for g in results.get("gates") or []
                          if isinstance(g, dict) and g.get("decision") == "fail"), None)
            if first != ffi:
                problems.append(f"{SUMMARY}: first_fail_iter {ffi} is not the first failing gate ({first})")
            _check_status(RESULTS, results, problems)
            for key in ("run_status", "runner_exit_code", "runner_signal"):
                if results.get(key) != summary.get(key):
                    problems.append(f"{key} differs between {RESULTS} and {SUMMARY}")
    if run_config is not None:
        _check_run_config(run_config, problems, missing if allow_legacy else None)

    # governance
    run_outdir = None
    if run_config is not None and isinstance(run_config.get("run"), dict):
        run_outdir = run_config["run"].get("outdir")
    gov = check_log(root, run_id=run_id, run_outdir=run_outdir if isinstance(run_outdir, str) else None,
                    strict=strict_governance, allow_legacy=allow_legacy_governance)
    if gov.present:
        problems.extend(gov.problems)
        if summary is not None and not gov.legacy:
            if GOVERNANCE_HEAD in summary:
                optional = frozenset({RESULTS}) if partial else frozenset()
                problems.extend(check_seal(root, gov.events, summary[GOVERNANCE_HEAD],
                                           optional=optional))
            else:
                missing.append(f"{SUMMARY}: {GOVERNANCE_HEAD}")
        if strict_governance and gov.legacy:
            problems.append("governance_log.jsonl holds legacy (unchained) events")
        governance = f"present, {'valid' if gov.valid else 'invalid'}, rev {gov.rev}"
    else:
        governance = "absent"
        if require_governance or strict_governance:
            problems.append("governance_log.jsonl is missing (--require-governance)")
        if summary is not None and isinstance(summary.get(GOVERNANCE_HEAD), dict):
            problems.append(f"governance_log.jsonl is missing but {SUMMARY} records its head")

    # identity
    if strict_identity:
        if run_config is None:
            problems.append(f"{RUN_CONFIG} is required with --strict-identity")
        else:
            if isinstance(run_outdir, str) and Path(run_outdir) != root.resolve():
                problems.append(f"{RUN_CONFIG}: run.outdir {run_outdir} is not this capsule ({root.resolve()})")
            code = signature.get("code") if isinstance(signature, dict) else None
            pkg = run_config.get("package")
            if isinstance(code, dict) and isinstance(pkg, dict) and (
                code.get("package") != pkg.get("name") or code.get("version") != pkg.get("version")
            ):
                problems.append("code identity differs between window_signature.json and run_config_resolved.json")
    warnings = [f"legacy capsule: missing contract key {key}" for key in missing]
    if not allow_legacy:
        problems.extend(f"{w} (use --allow-legacy to accept older capsules)" for w in warnings)
        warnings = []
    return ValidationReport(str(root), problems, partial, governance, warnings)
