"""``build_pack``: assemble, seal and sign an evidence pack from existing artifacts.

The pack is staged in a hidden sibling directory and renamed into place only after the manifest,
the checksums, the HTML page and the signature are written, so a failed build leaves nothing at
the destination. Every supplied report must be an ``evaluation.report.json`` that passes the
core's report verifier (and, by default, has ``runtime.manifest.json`` beside it).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from invarlock_core.atomic import atomic_write_bytes, staged_directory
from invarlock_core.canonical import canonical_json, prefixed, sha256_hex
from invarlock_core.errors import InputError, UsageError
from invarlock_core.output_checks import output_problem
from invarlock_core.schema_validation import validate_instance
from invarlock_packs import layout
from invarlock_packs.build_destination import check_destination, check_not_over_inputs
from invarlock_packs.build_inputs import (
    SIMPLE_NAME,
    PlannedReport,
    ReportInput,
    check_scenarios,
    metadata_documents,
    plan_reports,
    read_json_input,
)
from invarlock_packs.checksums import format_checksums, hash_files
from invarlock_packs.errors import PackIntegrityError, PackReportError, VerdictRequirementError
from invarlock_packs.html_page import PackView, render_pack_html
from invarlock_packs.manifest_contents import (
    EvidenceLevel,
    assemble_manifest,
    evidence_level,
    manifest_bytes,
)
from invarlock_packs.nested_reports import check_profile, verify_reports
from invarlock_packs.reviewer_readme import render_readme
from invarlock_packs.safe_paths import MAX_JSON_BYTES, read_bounded, walk_pack
from invarlock_packs.signing import fingerprint, load_private_key, sign_manifest

__all__ = ["BuiltPack", "ReportInput", "build_pack"]

_SCHEMAS: Final = "invarlock_packs"


@attrs.frozen
class BuiltPack:
    """Summary of a built pack."""

    path: Path
    verdict: str
    evidence_level: EvidenceLevel
    signing_key_fingerprint: str | None
    manifest_sha256: str
    file_count: int
    report_count: int
    html: Path | None


def _created_at() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = (
        dt.datetime.fromtimestamp(int(epoch), dt.UTC)
        if epoch and epoch.isdigit()
        else dt.datetime.now(dt.UTC)
    )
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def build_pack(
    out_dir: str | Path,
    *,
    final_verdict: str | Path,
    reports: Sequence[Path | str | ReportInput],
    signing_key: str | Path | Ed25519PrivateKey | None = None,
    metadata: Mapping[str, Path | Mapping[str, Any]] | None = None,
    materials: Mapping[str, str | Path] | None = None,
    summaries: Sequence[str | Path] = (),
    config_source: str | Path | None = None,
    invocation: Sequence[str] | None = None,
    profile: str | None = None,
    require_runtime_manifests: bool = True,
    require_pass: bool = False,
    release_review: bool = False,
    html: bool = True,
    overwrite: bool = False,
) -> BuiltPack:
    """Build, seal and (with ``signing_key``) sign an evidence pack at ``out_dir``.

    ``metadata`` maps names (``source_repo``, ``environment``, ``scenarios``, ``model_revisions``,
    ...) to JSON files or already-collected dicts, written to ``metadata/<name>.json``; the
    environment is collected automatically when not given. ``materials`` maps names to any input
    files, copied to ``metadata/materials/`` and recorded with their digests. ``release_review``
    requires a PASS verdict, a signing key and runtime manifests.
    """
    target = Path(out_dir)
    check_destination(target, overwrite=overwrite)
    problem = output_problem(target, directory=True)
    if problem:
        raise InputError(problem)
    if release_review:
        require_pass = require_runtime_manifests = True
        if signing_key is None:
            raise UsageError("release review requires a signing key")
    if not reports:
        raise UsageError("at least one report is required")
    check_profile(profile)
    verdict_path = Path(final_verdict)
    verdict_raw, verdict = read_json_input(verdict_path, "final verdict")
    validate_instance(verdict, "final-verdict", _SCHEMAS, what=f"final verdict {verdict_path}")
    if require_pass and verdict["verdict"] != "PASS":
        raise VerdictRequirementError(
            f"final verdict is {verdict['verdict']}, and PASS is required"
        )
    key = (
        signing_key
        if isinstance(signing_key, Ed25519PrivateKey) or signing_key is None
        else load_private_key(signing_key)
    )
    signer = fingerprint(key.public_key()) if key is not None else None

    plans = plan_reports(reports, require_runtime_manifests=require_runtime_manifests)
    for plan, outcome in zip(plans, verify_reports([p.source for p in plans], profile=profile)):
        if not outcome.ok:
            first = outcome.problems[0] if outcome.problems else f"exit {outcome.exit_code}"
            raise PackReportError(f"report {plan.source} fails verification: {first}")
    meta_docs = metadata_documents(metadata)
    check_scenarios(plans, meta_docs)
    material_items = {name: Path(p) for name, p in (materials or {}).items()}
    for name, path in material_items.items():
        if not SIMPLE_NAME.match(name):
            raise UsageError(f"material name {name!r} is not a simple name")
        if not path.is_file():
            raise InputError(f"material {name}: {path} is not a file")
    summary_paths = [Path(p) for p in summaries]
    for path in summary_paths:
        if path.name in {"final_verdict.json", "final_verdict.txt"} or not SIMPLE_NAME.match(
            path.name
        ):
            raise UsageError(f"summary file name {path.name!r} is not allowed")
        read_json_input(path, "summary")
    if config_source is not None and not Path(config_source).is_file():
        raise InputError(f"config source {config_source} is not a file")
    check_not_over_inputs(
        target,
        [
            verdict_path,
            *(p.source for p in plans),
            *(source for p in plans for _, source in p.sidecars),
            *(v for v in (metadata or {}).values() if isinstance(v, Path | str)),
            *material_items.values(),
            *summary_paths,
            *([Path(config_source)] if config_source is not None else []),
            *([Path(signing_key)] if isinstance(signing_key, str | Path) else []),
        ],
        [p.source.parent for p in plans],
    )

    created = _created_at()
    with staged_directory(target, overwrite=overwrite) as stage:
        _write_content(
            stage,
            verdict_raw,
            verdict,
            plans,
            meta_docs,
            material_items,
            summary_paths,
            config_source,
        )
        clean = sum(1 for p in plans if p.summary.category == "clean" and p.has_runtime_manifest)
        level = evidence_level(
            clean_reports=clean,
            failed_reports=0,
            has_source_repo="source_repo" in meta_docs,
            has_environment="environment" in meta_docs,
        )
        entries = [(p.directory + "/" + layout.REPORT_FILE, p.summary) for p in plans]
        _write(
            stage / layout.README,
            render_readme(
                verdict=verdict["verdict"],
                evidence_level=level,
                signer=signer,
                created_at=created,
                reports=entries,
                failed_requirements=[str(x) for x in verdict.get("failed_requirements", [])],
            ).encode(),
        )
        if html:
            view = PackView(
                title="InvarLock evidence pack",
                verdict=verdict["verdict"],
                evidence_level=level,
                signer=signer,
                created_at=created,
                reports=tuple(p.summary for p in plans),
                failed_requirements=tuple(str(x) for x in verdict.get("failed_requirements", [])),
                counts=tuple(
                    (str(k), str(v)) for k, v in sorted(verdict.get("counts", {}).items())
                ),
            )
            _write(stage / layout.HTML_PAGE, render_pack_html(view).encode())
        tree = walk_pack(stage)
        if tree.problems:
            raise PackIntegrityError(f"staged pack is unsafe: {tree.problems[0]}")
        digests = hash_files(stage, tree.files)
        checksums = format_checksums(digests)
        atomic_write_bytes(stage / layout.CHECKSUMS, checksums)
        manifest = assemble_manifest(
            digests=digests,
            checksums=checksums,
            verdict=verdict["verdict"],
            plans=plans,
            meta_docs=meta_docs,
            materials=material_items,
            config_source=config_source,
            invocation=invocation,
            created=created,
            level=level,
            signer=signer,
            profile=profile,
        )
        validate_instance(manifest, "evidence-pack-manifest", _SCHEMAS, what="built manifest")
        body = manifest_bytes(manifest)
        atomic_write_bytes(stage / layout.MANIFEST, body)
        if key is not None:
            atomic_write_bytes(stage / layout.SIGNATURE, canonical_json(sign_manifest(body, key)))
    return BuiltPack(
        path=target,
        verdict=verdict["verdict"],
        evidence_level=level,
        signing_key_fingerprint=signer,
        manifest_sha256=prefixed(sha256_hex(body)),
        file_count=len(digests),
        report_count=len(plans),
        html=target / layout.HTML_PAGE if html else None,
    )


def _write(path: Path, data: bytes) -> None:
    """Write a content file into the stage. No per-file fsync: the stage is renamed into place only
    after sealing, and a file torn by a crash would fail its checksum on verification."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "xb") as handle:
        handle.write(data)


def _write_content(
    stage: Path,
    verdict_raw: bytes,
    verdict: Mapping[str, Any],
    plans: Sequence[PlannedReport],
    meta_docs: Mapping[str, bytes],
    materials: Mapping[str, Path],
    summaries: Sequence[Path],
    config_source: str | Path | None,
) -> None:
    _write(stage / layout.FINAL_VERDICT_JSON, verdict_raw)
    lines = [str(verdict["verdict"])]
    lines += [f"failed: {item}" for item in verdict.get("failed_requirements", [])]
    _write(stage / layout.FINAL_VERDICT_TXT, ("\n".join(lines) + "\n").encode())
    for path in summaries:
        _write(stage / layout.RESULTS_DIR / path.name, read_bounded(path, MAX_JSON_BYTES))
    for plan in plans:
        directory = stage / plan.directory
        _write(directory / layout.REPORT_FILE, plan.raw)
        for name, source in plan.sidecars:
            _write(directory / name, read_bounded(source, MAX_JSON_BYTES))
    for name, raw in meta_docs.items():
        _write(stage / layout.METADATA_DIR / f"{name}.json", raw)
    for name, source in materials.items():
        destination = stage / layout.material_relpath(name, source.suffix)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
    if config_source is not None:
        shutil.copyfile(
            config_source, stage / layout.config_source_relpath(Path(config_source).suffix)
        )
