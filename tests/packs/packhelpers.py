"""Helpers shared by the pack tests: suite-like report layout, the verdict fixture, resealing."""

from __future__ import annotations

import json
import platform
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

SCENARIOS = {
    "scenarios": [
        {
            "id": "noop_clean",
            "category": "clean",
            "artifact_class": "validation_subject_checkpoint",
            "edit_type": "noop",
        },
        {
            "id": "reseed_stress",
            "category": "stress",
            "artifact_class": "fault_injection_fixture",
            "edit_type": "reseed",
        },
    ]
}
VERDICT = {
    "verdict": "PASS",
    "criteria": {
        "clean_all_pass": True,
        "stress_required_fail": True,
        "error_injection_detected": True,
        "informational_stress_min_fail_fraction": 0.5,
    },
    "counts": {"clean": 1, "stress": 1},
    "failed_requirements": [],
}


def write_json(path: Path, value: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def report_dir(
    dest: Path,
    source_report: Path,
    *,
    scenario: str,
    category: str,
    edit_type: str,
    artifact_class: str,
    runtime_manifest: bool = True,
) -> Path:
    """Lay out one suite run directory around a real report; returns the report path."""
    dest.mkdir(parents=True, exist_ok=True)
    report = dest / "evaluation.report.json"
    shutil.copyfile(source_report, report)
    written = source_report.parent / "runtime.manifest.json"
    if runtime_manifest and written.is_file():
        # The report binds the manifest written beside it: a fabricated one would not verify.
        shutil.copyfile(written, dest / "runtime.manifest.json")
    elif runtime_manifest:
        write_json(
            dest / "runtime.manifest.json",
            {
                "schema": "invarlock/runtime-manifest-v1",
                "python": platform.python_version(),
                "platform": platform.platform(),
                "execution_mode": "host",
                "command": ["invarlock", "evaluate"],
            },
        )
    write_json(
        dest / "edit_metadata.json",
        {
            "schema": "invarlock/evidence-pack-edit-metadata-v1",
            "scenario_id": scenario,
            "category": category,
            "artifact_class": artifact_class,
            "edit_type": edit_type,
            "parameters": {},
        },
    )
    return report


def reseal(
    pack: Path,
    key_path: Path | None,
    *,
    edit_manifest: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Re-seal a changed pack as its key holder would: checksums, digest references, signature.

    This is how the tests build packs that are correctly signed yet carry bad content, so that
    the nested report and metadata checks (exit 7) are exercised on their own.
    """
    from invarlock_core.canonical import canonical_json, sha256_hex
    from invarlock_packs.checksums import format_checksums, hash_files
    from invarlock_packs.manifest_contents import manifest_bytes
    from invarlock_packs.safe_paths import walk_pack
    from invarlock_packs.signing import load_private_key, sign_manifest

    files = [
        f
        for f in walk_pack(pack).files
        if f not in {"manifest.json", "checksums.sha256", "manifest.signature.json"}
    ]
    digests = hash_files(pack, files)
    checksums = format_checksums(digests)
    (pack / "checksums.sha256").write_bytes(checksums)
    manifest = json.loads((pack / "manifest.json").read_text())
    manifest["checksums_sha256_digest"] = sha256_hex(checksums)

    def fix(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("path"), str) and node["path"] in digests and "sha256" in node:
                node["sha256"] = "sha256:" + digests[node["path"]]
            for value in node.values():
                fix(value)
        elif isinstance(node, list):
            for value in node:
                fix(value)

    fix(manifest)
    if edit_manifest is not None:
        edit_manifest(manifest)
    body = manifest_bytes(manifest)
    (pack / "manifest.json").write_bytes(body)
    if key_path is not None:
        (pack / "manifest.signature.json").write_bytes(
            canonical_json(sign_manifest(body, load_private_key(key_path)))
        )
