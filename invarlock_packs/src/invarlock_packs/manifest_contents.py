"""The contents of ``manifest.json``: provenance, digest references and the evidence level."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from invarlock_core.canonical import prefixed, sha256_hex
from invarlock_packs import layout
from invarlock_packs.build_inputs import PlannedReport
from invarlock_packs.version import __version__

__all__ = ["EvidenceLevel", "assemble_manifest", "evidence_level", "manifest_bytes"]

EvidenceLevel = Literal["low", "medium", "high"]


def evidence_level(
    *, clean_reports: int, failed_reports: int, has_source_repo: bool, has_environment: bool
) -> EvidenceLevel:
    """``high``: clean reports, none failed, source-repo and environment references;
    ``medium``: clean reports; ``low`` otherwise. Clean reports carry their runtime manifest."""
    if clean_reports > 0 and failed_reports == 0 and has_source_repo and has_environment:
        return "high"
    return "medium" if clean_reports > 0 else "low"


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    """The exact bytes written to ``manifest.json`` (sorted keys, two-space indent, final newline)."""
    return (
        json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    ).encode()


def assemble_manifest(
    *,
    digests: Mapping[str, str],
    checksums: bytes,
    verdict: str,
    plans: Sequence[PlannedReport],
    meta_docs: Mapping[str, bytes],
    materials: Mapping[str, Path],
    config_source: str | Path | None,
    invocation: Sequence[str] | None,
    created: str,
    level: EvidenceLevel,
    signer: str | None,
    profile: str | None,
) -> dict[str, Any]:
    def ref(rel: str) -> dict[str, str]:
        return {"path": rel, "sha256": prefixed(digests[rel])}

    def meta_ref(name: str) -> dict[str, str] | None:
        return ref(f"{layout.METADATA_DIR}/{name}.json") if name in meta_docs else None

    report_entries = []
    for plan in plans:
        directory = plan.directory
        runtime = f"{directory}/{layout.RUNTIME_MANIFEST}"
        report_entries.append(
            {
                **ref(f"{directory}/{layout.REPORT_FILE}"),
                "model": plan.summary.model,
                "edit": plan.summary.edit,
                "run": plan.summary.run,
                "category": plan.summary.category,
                "runtime_manifest": ref(runtime) if runtime in digests else None,
            }
        )
    return {
        "format": layout.FORMAT,
        "harness_version": layout.HARNESS_VERSION,
        "checksums_sha256": layout.CHECKSUMS,
        "checksums_sha256_digest": sha256_hex(checksums),
        "created_at": created,
        "builder": {"name": "invarlock-packs", "version": __version__},
        "subject": {
            "verdict": verdict,
            "final_verdict": ref(layout.FINAL_VERDICT_JSON),
            "models": sorted({p.summary.model for p in plans}),
            "reports": report_entries,
        },
        "invocation": {
            "command": "invarlock pack build"
            if invocation is not None
            else "invarlock_packs.build_pack",
            "argv": list(invocation or []),
            "config_source": ref(layout.config_source_relpath(Path(config_source).suffix))
            if config_source is not None
            else None,
        },
        "environment": meta_ref("environment"),
        "source_repo": meta_ref("source_repo"),
        "scenarios": meta_ref("scenarios"),
        "materials": [
            {"name": name, **ref(layout.material_relpath(name, path.suffix))}
            for name, path in sorted(materials.items())
        ],
        "evidence_level": level,
        "verification": {
            "reports_total": len(plans),
            "reports_verified": len(plans),
            "reports_failed": 0,
            "clean_reports": sum(1 for p in plans if p.summary.category == "clean"),
            "runtime_manifests": sum(1 for p in plans if p.has_runtime_manifest),
            "verifier": "invarlock_core.report.verification",
            "profile": profile,
        },
        "signing_key_fingerprint": signer,
        "file_count": len(digests),
    }
