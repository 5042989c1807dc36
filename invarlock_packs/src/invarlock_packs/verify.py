"""``verify_pack``: check a received evidence pack offline, with no ML stack.

Checks run in this order and each one is recorded, pass or fail:

1. files (exit 3): the pack directory, ``manifest.json`` and ``checksums.sha256`` exist;
2. format (4): the manifest is strict JSON, format ``evidence-pack-v1``, and matches the shipped
   JSON Schema;
3. signature (5): ``manifest.signature.json`` is present (unsigned packs fail closed), canonical,
   verifies over the exact manifest bytes, names the signer the manifest names, and, when pinned,
   the signer is the expected one or is in the trust store;
4. integrity (6): ``checksums_sha256_digest`` binds ``checksums.sha256``; every listed file exists
   and matches; no links, special files, unsafe or case-colliding names; every digest-backed
   manifest reference matches; with ``strict`` also no file outside the checksums;
5. reports (7): the core's report verifier accepts every bundled report; edit metadata agrees
   with ``metadata/scenarios.json``; with ``report_assurance="strict"`` every report has its
   ``runtime.manifest.json``; the final verdict recomputed from the reports and
   ``metadata/scenarios.json`` is the recorded one (:mod:`invarlock_packs.verdict_check`).

The exit code is the lowest code among the failed checks (so 0 only when all pass).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

from invarlock_core.canonical import canonical_json, sha256_hex
from invarlock_core.errors import UsageError
from invarlock_core.schema_validation import schema_errors
from invarlock_packs import layout
from invarlock_packs.checksums import ChecksumFormatError, hash_files, parse_checksums
from invarlock_packs.errors import CATEGORY_EXIT_CODES, CheckCategory
from invarlock_packs.manifest_refs import digest_refs, report_entries
from invarlock_packs.nested_reports import check_profile, verify_reports
from invarlock_packs.safe_paths import (
    MAX_JSON_BYTES,
    UnsafePathError,
    parse_json_bytes,
    read_bounded,
    read_json_bounded,
    walk_pack,
)
from invarlock_packs.scenario_consistency import edit_metadata_problems, scenarios_by_id
from invarlock_packs.signing import check_signature_bundle, normalize_fingerprint
from invarlock_packs.trust import default_trust_store_path, load_trust_store
from invarlock_packs.verdict_check import recompute_pack_verdict

__all__ = ["REPORT_ASSURANCE_MODES", "Check", "PackVerification", "ReportAssurance", "verify_pack"]

ReportAssurance = Literal["off", "report", "strict"]
REPORT_ASSURANCE_MODES: tuple[ReportAssurance, ...] = ("off", "report", "strict")
_SCHEMA_PACKAGE = "invarlock_packs"
_MAX_SIGNATURE_BYTES = 64 * 1024
_MAX_LISTED = 5


@attrs.frozen
class Check:
    """One verification check and its outcome."""

    name: str
    category: CheckCategory
    ok: bool
    detail: str

    @property
    def exit_code(self) -> int:
        """The exit code this check causes: 0 when it passed."""
        return 0 if self.ok else CATEGORY_EXIT_CODES[self.category]


@attrs.frozen
class PackVerification:
    """Everything :func:`verify_pack` checked, and the verdict."""

    pack_dir: Path
    ok: bool
    exit_code: int
    checks: tuple[Check, ...]
    strict: bool
    report_assurance: ReportAssurance
    signer_fingerprint: str | None
    signer_pinned: bool
    evidence_level: str | None
    reports_checked: int

    @property
    def problems(self) -> tuple[str, ...]:
        """One line per failed check."""
        return tuple(f"{c.name}: {c.detail}" for c in self.checks if not c.ok)


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")


@attrs.define
class _Run:
    root: Path
    strict: bool
    assurance: ReportAssurance
    profile: str | None
    pins: frozenset[str] | None
    workers: int | None
    checks: list[Check] = attrs.field(factory=list)
    signer: str | None = None
    reports_checked: int = 0

    def add(self, name: str, category: CheckCategory, ok: bool, detail: str) -> bool:
        self.checks.append(Check(name, category, ok, detail))
        return ok

    def read_control(
        self,
        name: str,
        limit: int,
        *,
        missing: CheckCategory = "files",
        unsafe: CheckCategory = "integrity",
    ) -> bytes | None:
        """Read a control file; record a failed check (and return None) when it cannot be read."""
        try:
            return read_bounded(self.root / name, limit)
        except FileNotFoundError:
            self.add(f"files.{name}", missing, False, f"{name} is missing")
        except UnsafePathError as exc:
            self.add(f"files.{name}", unsafe, False, str(exc))
        return None


def _resolve_pins(
    expected_fingerprint: str | None, trust_store: str | Path | None, use_default: bool
) -> tuple[frozenset[str] | None, str]:
    pins: set[str] = set()
    sources = []
    if expected_fingerprint is not None:
        pins.add(normalize_fingerprint(expected_fingerprint))
        sources.append("--expected-fingerprint")
    store = Path(trust_store) if trust_store is not None else None
    if store is None and use_default and default_trust_store_path().is_file():
        store = default_trust_store_path()
    if store is not None:
        trusted = load_trust_store(store)
        if expected_fingerprint is not None:
            # Both given: the pinned signer must also be in the store.
            pins &= trusted
            if not pins:
                raise UsageError(
                    "--expected-fingerprint is not in the trust store; the combination can never pass"
                )
        else:
            pins |= trusted
        sources.append(f"trust store {store}")
    return (frozenset(pins) if sources else None), " and ".join(sources)


def verify_pack(
    pack_dir: str | Path,
    *,
    strict: bool = False,
    expected_fingerprint: str | None = None,
    trust_store: str | Path | None = None,
    report_assurance: ReportAssurance = "report",
    profile: str | None = None,
    use_default_trust_store: bool = True,
    workers: int | None = None,
) -> PackVerification:
    """Verify the pack at ``pack_dir`` and return every check performed.

    Bad arguments (an unknown assurance mode, a malformed fingerprint, an unreadable trust store)
    raise :class:`~invarlock_core.errors.UsageError`; everything about the pack itself is reported
    in the result, never raised. Large packs verify their reports in ``workers`` processes
    (default: one per CPU, at most 8).
    """
    if report_assurance not in REPORT_ASSURANCE_MODES:
        raise UsageError(f"report assurance must be one of {', '.join(REPORT_ASSURANCE_MODES)}")
    check_profile(profile)
    pins, pin_source = _resolve_pins(expected_fingerprint, trust_store, use_default_trust_store)
    run = _Run(Path(pack_dir), strict, report_assurance, profile, pins, workers)
    manifest = _check_files_and_format(run)
    if manifest is not None:
        manifest_bytes, manifest_data = manifest
        _check_signature(run, manifest_bytes, manifest_data, pin_source)
        hashes = _check_integrity(run, manifest_data)
        if hashes is not None:
            _check_reports(run, hashes)
            verdict = recompute_pack_verdict(run.root, hashes, report_assurance=run.assurance)
            run.add("reports.final_verdict", verdict.category, verdict.ok, verdict.detail)
    failed = [c.exit_code for c in run.checks if not c.ok and c.exit_code]
    level = manifest[1].get("evidence_level") if manifest is not None else None
    return PackVerification(
        pack_dir=run.root,
        ok=not failed,
        exit_code=min(failed) if failed else 0,
        checks=tuple(run.checks),
        strict=strict,
        report_assurance=report_assurance,
        signer_fingerprint=run.signer,
        signer_pinned=pins is not None,
        evidence_level=level if isinstance(level, str) else None,
        reports_checked=run.reports_checked,
    )


def _check_files_and_format(run: _Run) -> tuple[bytes, dict[str, Any]] | None:
    if not run.root.is_dir():
        run.add("files.pack_dir", "files", False, f"{run.root} is not a directory")
        return None
    run.add("files.pack_dir", "files", True, f"{run.root} exists")
    manifest_bytes = run.read_control(layout.MANIFEST, 64 * 1024 * 1024)
    checksums = run.root / layout.CHECKSUMS
    checksums_present = checksums.is_file() or checksums.is_symlink()
    if not checksums_present:
        run.add(f"files.{layout.CHECKSUMS}", "files", False, f"{layout.CHECKSUMS} is missing")
    if manifest_bytes is None or not checksums_present:
        return None
    run.add("files.required", "files", True, "manifest.json and checksums.sha256 are present")
    try:
        data = parse_json_bytes(manifest_bytes)
    except ValueError as exc:
        run.add("format.json", "format", False, f"manifest.json is not strict UTF-8 JSON: {exc}")
        return None
    if not isinstance(data, dict):
        run.add("format.json", "format", False, "manifest.json is not a JSON object")
        return None
    if data.get("format") != layout.FORMAT:
        run.add(
            "format.version", "format", False, f"unsupported manifest format {data.get('format')!r}"
        )
        return None
    problems = schema_errors(data, "evidence-pack-manifest", _SCHEMA_PACKAGE)
    if problems:
        run.add(
            "format.schema",
            "format",
            False,
            f"manifest does not match its schema: {_listed(problems)}",
        )
        return None
    run.add("format.schema", "format", True, f"manifest is a valid {layout.FORMAT} manifest")
    return manifest_bytes, data


def _canonical_bundle_problem(bundle: Mapping[str, Any], raw: bytes) -> str | None:
    """Reject bundles that could be re-encoded without changing their meaning (malleability)."""
    if canonical_json(bundle) != raw:
        return "signature bundle is not canonical JSON (sorted keys, compact, UTF-8)"
    sig = bundle["signature"]["value"]
    try:
        if base64.b64encode(base64.b64decode(sig.encode("ascii"), validate=True)).decode() != sig:
            return "signature value is not canonical base64"
    except (binascii.Error, UnicodeEncodeError):
        return "signature value is not valid base64"
    return None


def _check_signature(
    run: _Run, manifest_bytes: bytes, manifest: Mapping[str, Any], pin_source: str
) -> None:
    path = run.root / layout.SIGNATURE
    if not (path.exists() or path.is_symlink()):
        run.add(
            "signature.present",
            "signature",
            False,
            "pack is unsigned (manifest.signature.json is missing); unsigned packs fail closed",
        )
        return
    raw = run.read_control(
        layout.SIGNATURE, _MAX_SIGNATURE_BYTES, missing="signature", unsafe="signature"
    )
    if raw is None:
        return
    try:
        bundle = parse_json_bytes(raw)
    except ValueError as exc:
        run.add("signature.bundle", "signature", False, f"signature bundle is not JSON: {exc}")
        return
    problems = schema_errors(bundle, "evidence-pack-signature", _SCHEMA_PACKAGE)
    if problems:
        run.add(
            "signature.bundle",
            "signature",
            False,
            f"signature bundle is malformed: {_listed(problems)}",
        )
        return
    canonical_problem = _canonical_bundle_problem(bundle, raw)
    if canonical_problem:
        run.add("signature.bundle", "signature", False, canonical_problem)
        return
    outcome = check_signature_bundle(bundle, manifest_bytes)
    run.signer = outcome.fingerprint
    if not run.add("signature.valid", "signature", outcome.ok, outcome.detail):
        return
    declared = manifest.get("signing_key_fingerprint")
    if declared is not None and declared != outcome.fingerprint:
        run.add(
            "signature.manifest_signer",
            "signature",
            False,
            f"manifest names signer {declared} but the bundle is signed by {outcome.fingerprint}",
        )
        return
    if run.pins is None:
        run.add(
            "signature.signer",
            "info",
            True,
            f"signer {outcome.fingerprint} is not pinned: this proves integrity, not who signed; "
            "pin it with --expected-fingerprint or a trust store",
        )
    elif outcome.fingerprint in run.pins:
        run.add(
            "signature.signer",
            "signature",
            True,
            f"signer {outcome.fingerprint} is trusted ({pin_source})",
        )
    else:
        run.add(
            "signature.signer",
            "signature",
            False,
            f"signer {outcome.fingerprint} is not trusted ({pin_source})",
        )


def _check_integrity(run: _Run, manifest: Mapping[str, Any]) -> dict[str, str] | None:
    """Integrity checks; returns ``{relpath: hex}`` of listed files that hashed correctly."""
    raw = run.read_control(layout.CHECKSUMS, 64 * 1024 * 1024)
    if raw is None:
        return None
    expected = manifest["checksums_sha256_digest"]
    actual_digest = sha256_hex(raw)
    run.add(
        "integrity.digest_binding",
        "integrity",
        actual_digest == expected,
        "checksums.sha256 matches checksums_sha256_digest"
        if actual_digest == expected
        else f"checksums.sha256 has sha256 {actual_digest}, the manifest binds {expected}",
    )
    try:
        listed = parse_checksums(raw)
    except ChecksumFormatError as exc:
        run.add("integrity.checksums_format", "integrity", False, str(exc))
        return None
    tree = walk_pack(run.root)
    run.add(
        "integrity.tree",
        "integrity",
        not tree.problems,
        "no links, special files or unsafe names"
        if not tree.problems
        else _listed(list(tree.problems)),
    )
    control_listed = sorted(set(listed) & layout.CONTROL_FILES)
    if control_listed:
        run.add(
            "integrity.control_files",
            "integrity",
            False,
            f"control files must not be listed in checksums.sha256: {_listed(control_listed)}",
        )
    present = set(tree.files)
    missing = sorted(set(listed) - present)
    run.add(
        "integrity.listed_present",
        "integrity",
        not missing,
        f"all {len(listed)} listed files are present"
        if not missing
        else f"listed files are missing: {_listed(missing)}",
    )
    actual = hash_files(run.root, [rel for rel in listed if rel in present])
    mismatched = sorted(rel for rel, hexd in actual.items() if hexd != listed[rel])
    run.add(
        "integrity.checksums",
        "integrity",
        not mismatched,
        f"{len(actual)} files match checksums.sha256"
        if not mismatched
        else f"files do not match checksums.sha256: {_listed(mismatched)}",
    )
    extra = sorted(present - set(listed) - layout.CONTROL_FILES)
    if run.strict:
        run.add(
            "integrity.strict_extra_files",
            "integrity",
            not extra,
            "no files outside checksums.sha256"
            if not extra
            else f"files not listed in checksums.sha256: {_listed(extra)}",
        )
    elif extra:
        run.add(
            "integrity.extra_files",
            "info",
            True,
            f"{len(extra)} unlisted files ignored (fails with --strict): {_listed(extra)}",
        )
    good = {rel: hexd for rel, hexd in actual.items() if hexd == listed[rel]}
    _check_refs(run, manifest, listed)
    return good


def _check_refs(run: _Run, manifest: Mapping[str, Any], listed: Mapping[str, str]) -> None:
    bad = []
    refs = digest_refs(manifest)
    for ref in refs:
        sealed = listed.get(ref.path)
        if sealed is None:
            bad.append(f"{ref.where} -> {ref.path} is not sealed in checksums.sha256")
        elif ref.sha256 != f"sha256:{sealed}":
            bad.append(f"{ref.where} -> {ref.path} digest differs from checksums.sha256")
    entries = report_entries(manifest)
    if entries or (
        isinstance(manifest.get("subject"), Mapping) and "reports" in manifest["subject"]
    ):
        named = {e.get("path") for e in entries}
        unnamed = sorted(rel for rel in listed if _is_report(rel) and rel not in named)
        bad.extend(f"report {rel} is not in the manifest's subject.reports" for rel in unnamed)
    run.add(
        "integrity.digest_refs",
        "integrity",
        not bad,
        f"{len(refs)} digest-backed references match" if not bad else _listed(bad),
    )


def _is_report(rel: str) -> bool:
    return rel.startswith(layout.REPORTS_DIR + "/") and rel.endswith("/" + layout.REPORT_FILE)


def _check_reports(run: _Run, hashes: Mapping[str, str]) -> None:
    reports = sorted(rel for rel in hashes if _is_report(rel))
    if run.assurance == "off":
        run.add(
            "reports.nested",
            "info",
            True,
            f"nested verification of {len(reports)} reports skipped (report assurance off)",
        )
        return
    failed = []
    readable = []
    for rel in reports:
        if (run.root / rel).stat().st_size > MAX_JSON_BYTES:
            failed.append(f"{rel}: larger than {MAX_JSON_BYTES} bytes")
        else:
            readable.append(rel)
    outcomes = verify_reports(
        [run.root / rel for rel in readable], profile=run.profile, workers=run.workers
    )
    run.reports_checked += len(outcomes)
    for rel, outcome in zip(readable, outcomes):
        if not outcome.ok:
            first = outcome.problems[0] if outcome.problems else f"exit {outcome.exit_code}"
            failed.append(f"{rel}: {first}")
    run.add(
        "reports.nested",
        "reports",
        not failed,
        f"{len(reports)} reports pass the core report verifier" if not failed else _listed(failed),
    )
    lacking = sorted(
        rel
        for rel in reports
        if rel.rsplit("/", 1)[0] + "/" + layout.RUNTIME_MANIFEST not in hashes
    )
    strict = run.assurance == "strict"
    run.add(
        "reports.runtime_manifests",
        "reports" if strict else "info",
        not (strict and lacking),
        "every report has its runtime.manifest.json"
        if not lacking
        else f"reports without runtime.manifest.json{'' if strict else ' (fails with --report-assurance strict)'}: "
        f"{_listed(lacking)}",
    )
    _check_edit_metadata(run, hashes)


def _check_edit_metadata(run: _Run, hashes: Mapping[str, str]) -> None:
    sidecars = sorted(
        rel
        for rel in hashes
        if rel.startswith(layout.REPORTS_DIR + "/") and rel.endswith("/" + layout.EDIT_METADATA)
    )
    if not sidecars:
        return
    if layout.SCENARIOS not in hashes:
        run.add(
            "reports.edit_metadata",
            "reports",
            False,
            f"edit metadata present but {layout.SCENARIOS} is missing",
        )
        return
    problems: list[str] = []
    scenarios_doc = _load_checked(run.root / layout.SCENARIOS, "scenarios", problems)
    by_id = scenarios_by_id(scenarios_doc) if isinstance(scenarios_doc, Mapping) else {}
    for rel in sidecars if scenarios_doc is not None else []:
        meta = _load_checked(run.root / rel, "edit-metadata", problems, package="invarlock_core")
        if isinstance(meta, Mapping):
            problems.extend(edit_metadata_problems(rel, meta, by_id))
    run.add(
        "reports.edit_metadata",
        "reports",
        not problems,
        f"{len(sidecars)} edit metadata files agree with {layout.SCENARIOS}"
        if not problems
        else _listed(problems),
    )


def _load_checked(
    path: Path, schema: str, problems: list[str], *, package: str = _SCHEMA_PACKAGE
) -> Any:
    try:
        data = read_json_bounded(path)
    except (ValueError, OSError, UnsafePathError) as exc:
        problems.append(f"{path.name}: not readable JSON ({exc})")
        return None
    errors = schema_errors(data, schema, package)
    if errors:
        problems.append(f"{path.name}: {_listed(errors)}")
        return None
    return data
