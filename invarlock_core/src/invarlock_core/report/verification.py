"""Independent verification of ``evaluation.report.json``: ``invarlock verify`` and the packs.

:func:`verify_report_file` never trusts what a report says about itself. It checks, in order:

1. the file reads as a JSON object (else exit 2),
2. it matches the ``evaluation-report`` JSON Schema (else exit 2),
3. the window plan digest, recomputed from the recorded window ids and token digests, and the
   pairing of per-window numbers with the planned windows,
4. the ``digests`` section (policy, windows, per-window numbers, the whole report), and that the
   policy is what its recorded sources imply (a ``tier`` acceptance range is that tier's limit,
   floors, tolerance and a ``profile`` drift band are that profile's),
5. the verdict, reasons, ratio, CI and validation flags, recomputed with
   :func:`invarlock_core.evaluation.verdict.judge` from the per-window numbers and the recorded policy,
6. the evidence floors of a profile (``profile=...``, default: the report's own),
7. optionally (``check_models=True``) the checkpoint files still on disk against their digests,
8. for a report read from a file, the files of its set that lie beside it: a probe sidecar
   against ``probe.sha256``; ``runtime.manifest.json`` against the digest in ``sidecars`` and its
   ``report_digests`` against this report's digests; ``evaluate_timing.json`` against its sha256
   in ``sidecars``; ``evaluation_report.md`` must name this report's digest. A sidecar that is
   absent is not checked (the report stands on its own); one from another run fails.

A report hand-edited to say PASS fails step 4 and step 5. Exit codes: 0 verified, 1 failed,
2 unreadable or invalid. Needs NumPy and jsonschema only, never torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from invarlock_core.canonical import file_sha256, prefixed
from invarlock_core.errors import EXIT_FAIL, EXIT_OK, EXIT_USAGE, InputError
from invarlock_core.evaluation.policy import TIERS, load_profile
from invarlock_core.evaluation.verdict import judge
from invarlock_core.evaluation.windows import plan_digest
from invarlock_core.json_files import read_json_object
from invarlock_core.report.document import (
    MARKDOWN_FILENAME,
    REPORT_FILENAME,
    RUNTIME_MANIFEST_FILENAME,
    SCHEMA_NAME,
    TIMING_FILENAME,
    compute_digests,
    guard_outcomes,
    load_report,
    runtime_manifest_digest,
    window_scores,
)
from invarlock_core.schema_validation import schema_errors

__all__ = ["Check", "ReportVerification", "verify_report", "verify_report_file"]

_REL_TOL = 1e-9


@attrs.frozen
class Check:
    """One verification step."""

    name: str
    ok: bool
    detail: str = ""


@attrs.frozen
class ReportVerification:
    """The outcome of verifying one report."""

    path: Path
    ok: bool
    exit_code: int
    checks: tuple[Check, ...]
    problems: tuple[str, ...]
    verdict: str | None = None
    summary: str = ""
    """One line: tier, profile, acceptance range and its source, ratio and CI."""

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "ok": self.ok,
            "exit_code": self.exit_code,
            "verdict": self.verdict,
            "summary": self.summary,
            "checks": [attrs.asdict(c) for c in self.checks],
            "problems": list(self.problems),
        }


def _close(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    return math.isclose(float(a), float(b), rel_tol=_REL_TOL, abs_tol=1e-12)


def _pairing(report: Mapping[str, Any]) -> list[str]:
    problems = []
    windows, per_window = report["windows"], report["primary_metric"]["per_window"]
    recomputed = plan_digest(windows)
    if recomputed != windows["digest"]:
        problems.append(f"window plan digest mismatch (recorded {windows['digest'][:19]}…, recomputed {recomputed[:19]}…)")
    scored = int(windows["seq_len"]) - 1
    for group in ("final", "preview"):
        planned = [w["id"] for w in windows[group]]
        recorded = [w["id"] for w in per_window[group]]
        if planned != recorded:
            problems.append(f"{group} per-window numbers are not paired with the planned {group} windows")
        if any(int(w["tokens"]) != scored for w in per_window[group]):
            problems.append(f"{group} per-window token counts differ from seq_len - 1 = {scored}")
        starts = [int(w["start"]) for w in windows[group]]
        if any(f"w{s}" != i for s, i in zip(starts, planned)):
            problems.append(f"{group} window ids do not match their start offsets")
    return problems


def _digests(report: Mapping[str, Any]) -> list[str]:
    recorded = report["digests"]
    expected = compute_digests(report)
    return [
        f"digest {name} mismatch (recorded {str(recorded.get(name))[:19]}…, recomputed {value[:19]}…)"
        for name, value in expected.items()
        if recorded.get(name) != value
    ]


def _verdict(report: Mapping[str, Any]) -> list[str]:
    per_window = report["primary_metric"]["per_window"]
    subject = report["subject"]
    judgement = judge(
        final=window_scores(per_window["final"]),
        preview=window_scores(per_window["preview"]),
        policy=report["policy"],
        guards=guard_outcomes(report["guards"]),
        nonfinite_tensors=subject["nonfinite_tensors"],
        nonfinite_tensor_count=subject["nonfinite_tensor_count"],
    )
    problems = []
    if judgement.verdict != report["verdict"]:
        problems.append(
            f"recorded verdict {report['verdict']} does not follow from the recorded numbers and "
            f"policy (recomputed {judgement.verdict}"
            + (f": {judgement.reasons[0]}" if judgement.reasons else "")
            + ")"
        )
    if list(judgement.reasons) != list(report["reasons"]):
        problems.append("recorded reasons differ from the recomputed reasons")
    pm = report["primary_metric"]
    for key in ("ratio", "ci", "delta_logloss", "drift", "preview_ratio"):
        if not _close(pm.get(key), judgement.primary_metric.get(key)):
            problems.append(f"primary_metric.{key} {pm.get(key)} differs from the recomputed {judgement.primary_metric.get(key)}")
    for flag, value in judgement.validation.items():
        if report["validation"].get(flag) != value:
            problems.append(f"validation.{flag} is {report['validation'].get(flag)}, recomputed {value}")
    return problems


def _policy(report: Mapping[str, Any]) -> list[str]:
    """The recorded policy must be what its recorded sources imply (no silent loosening)."""
    policy = report["policy"]
    profile = load_profile(str(policy["profile"]))
    problems = []
    if policy["acceptance_source"] == "tier":
        expected = [0.0, TIERS[str(policy["tier"])].max_ratio]
        if not _close(list(policy["acceptance_range"]), expected):
            problems.append(
                f"policy acceptance_range {policy['acceptance_range']} is not the {policy['tier']} "
                f"tier's {expected} although its source is 'tier'"
            )
    if policy.get("drift_source", "profile") == "profile" and not _close(
        list(policy["drift_band"]), list(profile.drift_band)
    ):
        problems.append(f"policy drift_band {policy['drift_band']} is not the {profile.name} profile's")
    if dict(policy["floors"]) != attrs.asdict(profile.floors):
        problems.append(f"policy floors differ from the {profile.name} profile's floors")
    if not _close(policy["tolerance"], profile.tolerance):
        problems.append(f"policy tolerance {policy['tolerance']} is not the {profile.name} profile's")
    if preset := report.get("preset"):
        if policy["acceptance_source"] == "preset" and not preset.get("digest"):
            problems.append("policy cites a preset but the report records no preset digest")
    elif "preset" in (policy["acceptance_source"], policy.get("drift_source")):
        problems.append("policy cites a preset but the report records none")
    return problems


def _floors(report: Mapping[str, Any], profile: str | None) -> list[str]:
    if profile is None:
        floors, name = report["policy"]["floors"], report["policy"]["profile"]
    else:
        floors, name = attrs.asdict(load_profile(profile).floors), profile
    pm = report["primary_metric"]
    replicates = int(report["policy"]["bootstrap"]["replicates"])
    problems = []
    for what, have, need in (
        ("final windows", pm["windows"]["final"], floors["final_windows"]),
        ("preview windows", pm["windows"]["preview"], floors["preview_windows"]),
        ("scored final tokens", pm["tokens"]["final"], floors["tokens"]),
        ("bootstrap replicates", replicates, floors["replicates"]),
    ):
        if int(have) < int(need):
            problems.append(f"profile {name}: {have} {what}, the floor is {need}")
    return problems


def _models(report: Mapping[str, Any]) -> list[str]:
    problems = []
    for role in ("baseline", "subject"):
        root = Path(report[role]["path"])
        if not root.is_dir():
            problems.append(f"{role} checkpoint {root} is not present to re-hash")
            continue
        for rel, digest in sorted(report[role]["files"].items()):
            file = root / rel
            if not file.is_file():
                problems.append(f"{role} file {rel} is missing")
            elif file_sha256(file) != digest:
                problems.append(f"{role} file {rel} changed since the evaluation")
    return problems


def _probe_sidecar(report: Mapping[str, Any], directory: Path) -> list[str]:
    probe = report.get("probe")
    if not isinstance(probe, Mapping) or probe.get("status") != "written":
        return []
    file = directory / str(probe["file"])
    if file.is_file() and prefixed(file_sha256(file)) != probe["sha256"]:
        return [f"probe sidecar {probe['file']} differs from the sha256 the report records"]
    return []


def _runtime_manifest(report: Mapping[str, Any], directory: Path) -> list[str]:
    """The manifest beside the report must be this report's: its content digest as the report
    records it (reports that bind it), and its ``report_digests`` equal to the report's digests."""
    file = directory / RUNTIME_MANIFEST_FILENAME
    if not file.is_file():
        return []
    try:
        manifest = read_json_object(file, what="runtime manifest")
    except InputError as exc:
        return [str(exc)]
    problems = []
    recorded = (report.get("sidecars") or {}).get(RUNTIME_MANIFEST_FILENAME)
    if recorded is not None and runtime_manifest_digest(manifest) != recorded:
        problems.append(f"{RUNTIME_MANIFEST_FILENAME} is not the runtime manifest this report records")
    if manifest.get("report_digests") != report["digests"]:
        problems.append(f"{RUNTIME_MANIFEST_FILENAME} was written for another report (its report_digests differ)")
    return problems


def _timing_and_markdown(report: Mapping[str, Any], directory: Path) -> list[str]:
    problems = []
    timing = directory / TIMING_FILENAME
    recorded = (report.get("sidecars") or {}).get(TIMING_FILENAME)
    if recorded is not None and timing.is_file() and prefixed(file_sha256(timing)) != recorded:
        problems.append(f"{TIMING_FILENAME} differs from the sha256 the report records")
    markdown = directory / MARKDOWN_FILENAME
    if markdown.is_file() and str(report["digests"]["report"]) not in markdown.read_text("utf-8", errors="replace"):
        problems.append(f"{MARKDOWN_FILENAME} was rendered from another report")
    return problems


def _sidecars(report: Mapping[str, Any], directory: Path) -> list[str]:
    """Every file beside the report that belongs to its set must be this report's."""
    return [
        *_probe_sidecar(report, directory),
        *_runtime_manifest(report, directory),
        *_timing_and_markdown(report, directory),
    ]


def verify_report(
    report: Mapping[str, Any],
    *,
    path: Path = Path(REPORT_FILENAME),
    profile: str | None = None,
    check_models: bool = False,
    directory: Path | None = None,
) -> ReportVerification:
    """Verify an already-parsed report (see the module docstring for the steps).

    ``directory``: where the report's sidecars lie (:func:`verify_report_file` passes the report's
    own directory); ``None`` skips the sidecar step.
    """
    errors = schema_errors(report, SCHEMA_NAME)
    if errors:
        shown = "; ".join(errors[:3]) + (f" (+{len(errors) - 3} more)" if len(errors) > 3 else "")
        return ReportVerification(
            path, False, EXIT_USAGE, (Check("schema", False, shown),), (f"schema: {shown}",)
        )
    steps = [("schema", list[str]()), ("pairing", _pairing(report)), ("digests", _digests(report))]
    steps.append(("policy", _policy(report)))
    steps.append(("verdict", _verdict(report)))
    steps.append(("profile", _floors(report, profile)))
    if check_models:
        steps.append(("models", _models(report)))
    if directory is not None:
        steps.append(("sidecars", _sidecars(report, directory)))
    checks = tuple(Check(name, not found, "; ".join(found)) for name, found in steps)
    problems = tuple(p for _, found in steps for p in found)
    return ReportVerification(
        path=path,
        ok=not problems,
        exit_code=EXIT_OK if not problems else EXIT_FAIL,
        checks=checks,
        problems=problems,
        verdict=str(report["verdict"]),
        summary=_summary(report),
    )


def _summary(report: Mapping[str, Any]) -> str:
    policy, pm = report["policy"], report["primary_metric"]
    lo, hi = policy["acceptance_range"]
    ratio = "n/a" if pm["ratio"] is None else f"{pm['ratio']:.4f}"
    ci = "n/a" if pm["ci"] is None else f"[{pm['ci'][0]:.4f}, {pm['ci'][1]:.4f}]"
    return (
        f"tier {policy['tier']}, profile {policy['profile']}, acceptance [{lo}, {hi}] "
        f"({policy['acceptance_source']}), ratio {ratio}, CI {ci}"
    )


def verify_report_file(
    path: Path, *, profile: str | None = None, check_models: bool = False
) -> ReportVerification:
    """Read and verify one report file (a directory means its ``evaluation.report.json``)."""
    file = Path(path)
    if file.is_dir():
        file = file / REPORT_FILENAME
    try:
        report = load_report(file)
    except InputError as exc:
        return ReportVerification(file, False, EXIT_USAGE, (Check("read", False, str(exc)),), (str(exc),))
    return verify_report(
        report, path=file, profile=profile, check_models=check_models, directory=file.parent
    )
