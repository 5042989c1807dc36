"""``inspect_pack``: a quick read-only summary of a received pack, without nested verification.

It reports manifest validity, checksum coverage (listed, present, missing, unlisted), the signed
provenance references, the report inventory and whether the pack looks ready for strict
verification. It does not hash files or run the report verifier: use :func:`verify_pack` for that.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from invarlock_core.schema_validation import schema_errors
from invarlock_packs import layout
from invarlock_packs.checksums import ChecksumFormatError, parse_checksums
from invarlock_packs.errors import PackMissingError
from invarlock_packs.manifest_refs import digest_refs
from invarlock_packs.safe_paths import UnsafePathError, parse_json_bytes, read_bounded, walk_pack

__all__ = ["InventoryEntry", "PackInspection", "inspect_pack"]


@attrs.frozen
class InventoryEntry:
    """One bundled report."""

    path: str
    model: str | None
    edit: str | None
    run: str | None
    category: str | None
    has_runtime_manifest: bool
    sidecars: tuple[str, ...]


@attrs.frozen
class PackInspection:
    """What :func:`inspect_pack` found."""

    pack_dir: Path
    format: str | None
    manifest_valid: bool
    manifest_problems: tuple[str, ...]
    verdict: str | None
    evidence_level: str | None
    signed: bool
    signing_key_fingerprint: str | None
    files_listed: int
    files_present: int
    missing_files: tuple[str, ...]
    unlisted_files: tuple[str, ...]
    unsafe_entries: tuple[str, ...]
    provenance_refs: tuple[str, ...]
    reports: tuple[InventoryEntry, ...]
    strict_ready: bool
    strict_blockers: tuple[str, ...]


def _manifest_entry(manifest: Mapping[str, Any], rel: str) -> Mapping[str, Any]:
    subject = manifest.get("subject")
    entries = subject.get("reports", []) if isinstance(subject, Mapping) else []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, Mapping) and entry.get("path") == rel:
            return entry
    return {}


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def inspect_pack(pack_dir: str | Path) -> PackInspection:
    """Summarise the pack at ``pack_dir``; raises :class:`PackMissingError` when it is absent."""
    root = Path(pack_dir)
    if not root.is_dir():
        raise PackMissingError(f"{root} is not a directory")
    try:
        manifest_raw = read_bounded(root / layout.MANIFEST)
    except FileNotFoundError as exc:
        raise PackMissingError(f"{root / layout.MANIFEST} is missing") from exc
    except UnsafePathError as exc:
        raise PackMissingError(f"{root / layout.MANIFEST}: {exc}") from exc
    problems: list[str] = []
    manifest: dict[str, Any] = {}
    try:
        parsed = parse_json_bytes(manifest_raw)
        if isinstance(parsed, dict):
            manifest = parsed
            problems = schema_errors(parsed, "evidence-pack-manifest", "invarlock_packs")
        else:
            problems = ["manifest.json is not a JSON object"]
    except ValueError as exc:
        problems = [f"manifest.json is not JSON: {exc}"]
    listed: dict[str, str] = {}
    try:
        listed = parse_checksums(read_bounded(root / layout.CHECKSUMS))
    except FileNotFoundError:
        problems.append("checksums.sha256 is missing")
    except (ChecksumFormatError, UnsafePathError) as exc:
        problems.append(str(exc))
    tree = walk_pack(root)
    present = set(tree.files) - layout.CONTROL_FILES
    missing = tuple(sorted(set(listed) - present))
    unlisted = tuple(sorted(present - set(listed)))
    reports = []
    for rel in sorted(
        f for f in tree.files if f.startswith("reports/") and f.endswith("/" + layout.REPORT_FILE)
    ):
        directory = rel.rsplit("/", 1)[0]
        entry = _manifest_entry(manifest, rel)
        sidecars = tuple(
            name for name in layout.REPORT_SIDECARS if f"{directory}/{name}" in present
        )
        reports.append(
            InventoryEntry(
                path=rel,
                model=_string(entry.get("model")),
                edit=_string(entry.get("edit")),
                run=_string(entry.get("run")),
                category=_string(entry.get("category")),
                has_runtime_manifest=layout.RUNTIME_MANIFEST in sidecars,
                sidecars=sidecars,
            )
        )
    signature = root / layout.SIGNATURE
    signed = signature.is_file() and not signature.is_symlink()
    subject = manifest.get("subject")
    verdict = subject.get("verdict") if isinstance(subject, Mapping) else None
    blockers = [
        *(["manifest is invalid"] if problems else []),
        *(["pack is unsigned"] if not signed else []),
        *([f"{len(missing)} listed files are missing"] if missing else []),
        *([f"{len(unlisted)} files are not listed in checksums.sha256"] if unlisted else []),
        *([f"{len(tree.problems)} unsafe entries"] if tree.problems else []),
        *(
            ["a report lacks runtime.manifest.json"]
            if any(not r.has_runtime_manifest for r in reports)
            else []
        ),
    ]
    return PackInspection(
        pack_dir=root,
        format=_string(manifest.get("format")),
        manifest_valid=not problems,
        manifest_problems=tuple(problems),
        verdict=_string(verdict),
        evidence_level=_string(manifest.get("evidence_level")),
        signed=signed,
        signing_key_fingerprint=_string(manifest.get("signing_key_fingerprint")),
        files_listed=len(listed),
        files_present=len(present),
        missing_files=missing,
        unlisted_files=unlisted,
        unsafe_entries=tree.problems,
        provenance_refs=tuple(f"{r.where} -> {r.path}" for r in digest_refs(manifest)),
        reports=tuple(reports),
        strict_ready=not blockers,
        strict_blockers=tuple(blockers),
    )
