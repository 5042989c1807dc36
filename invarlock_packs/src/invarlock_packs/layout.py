"""Names and places inside an evidence pack (format ``evidence-pack-v1``).

::

    <pack>/
      manifest.json              control file: signed, sorted keys
      manifest.signature.json    control file: detached Ed25519 bundle over manifest.json's bytes
      checksums.sha256           control file: "<hex>  <relpath>" for every other file, sorted
      README.md                  reviewer summary
      index.html                 self-contained offline page (optional)
      results/final_verdict.json, results/final_verdict.txt, results/<summary>.json
      reports/<model>/<edit>/<run>/evaluation.report.json (+ runtime.manifest.json, sidecars)
      metadata/source_repo.json, environment.json, scenarios.json, <material>...
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CHECKSUMS",
    "CONTROL_FILES",
    "EDIT_METADATA",
    "ENVIRONMENT",
    "FINAL_VERDICT_JSON",
    "FINAL_VERDICT_TXT",
    "FORMAT",
    "HARNESS_VERSION",
    "HTML_PAGE",
    "MANIFEST",
    "METADATA_DIR",
    "README",
    "REPORTS_DIR",
    "REPORT_FILE",
    "REPORT_SIDECARS",
    "RESULTS_DIR",
    "RUNTIME_MANIFEST",
    "SCENARIOS",
    "SIGNATURE",
    "SIGNATURE_FORMAT",
    "SOURCE_REPO",
    "config_source_relpath",
    "material_relpath",
]

FORMAT: Final = "evidence-pack-v1"
HARNESS_VERSION: Final = "evidence-packs-v1"
SIGNATURE_FORMAT: Final = "evidence-pack-signature-v1"

MANIFEST: Final = "manifest.json"
SIGNATURE: Final = "manifest.signature.json"
CHECKSUMS: Final = "checksums.sha256"
CONTROL_FILES: Final = frozenset({MANIFEST, SIGNATURE, CHECKSUMS})
"""Files that are never listed in ``checksums.sha256`` (they seal the rest)."""

README: Final = "README.md"
HTML_PAGE: Final = "index.html"
RESULTS_DIR: Final = "results"
REPORTS_DIR: Final = "reports"
METADATA_DIR: Final = "metadata"
FINAL_VERDICT_JSON: Final = "results/final_verdict.json"
FINAL_VERDICT_TXT: Final = "results/final_verdict.txt"
SOURCE_REPO: Final = "metadata/source_repo.json"
ENVIRONMENT: Final = "metadata/environment.json"
SCENARIOS: Final = "metadata/scenarios.json"

REPORT_FILE: Final = "evaluation.report.json"
RUNTIME_MANIFEST: Final = "runtime.manifest.json"
EDIT_METADATA: Final = "edit_metadata.json"
REPORT_SIDECARS: Final = (
    RUNTIME_MANIFEST,
    EDIT_METADATA,
    "verify.json",
    "evaluation.html",
    "rmt_probe.json",
    "ve_probe.json",
    "deployable_artifact_validation.json",
    "backend_inventory.json",
    "memory_report.json",
    "load_smoke.json",
    "inference_smoke.json",
)
"""Files copied from beside a report when present. A fixed list: nothing else is picked up."""


def material_relpath(name: str, source_suffix: str) -> str:
    """Where material ``name`` (a file with suffix ``source_suffix``) is copied in the pack."""
    suffix = "".join(c for c in source_suffix if c.isalnum() or c == ".")[:16]
    return f"{METADATA_DIR}/materials/{name}{suffix}"


def config_source_relpath(source_suffix: str) -> str:
    """Where the suite's configuration file is copied in the pack."""
    return material_relpath("config_source", source_suffix).replace("/materials/", "/")
