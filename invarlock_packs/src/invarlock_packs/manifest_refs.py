"""Digest-backed references inside a manifest: where they are and what they point to.

A reference is an object ``{"path": <pack-relative path>, "sha256": "sha256:<hex>"}``. The
verifier checks every reference at the known places (subject, ``invocation.config_source``,
environment, source repo, scenarios, materials, each report and its runtime manifest) against
the sealed checksums.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import attrs

__all__ = ["DigestRef", "digest_refs", "report_entries"]


@attrs.frozen
class DigestRef:
    """One digest-backed reference found in a manifest."""

    where: str
    path: str
    sha256: str


def _ref(where: str, value: Any) -> Iterator[DigestRef]:
    if isinstance(value, Mapping) and isinstance(value.get("path"), str):
        digest = value.get("sha256")
        yield DigestRef(where, value["path"], digest if isinstance(digest, str) else "")


def report_entries(manifest: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The manifest's ``subject.reports`` entries (empty when absent)."""
    subject = manifest.get("subject")
    reports = subject.get("reports") if isinstance(subject, Mapping) else None
    return [r for r in reports if isinstance(r, Mapping)] if isinstance(reports, list) else []


def digest_refs(manifest: Mapping[str, Any]) -> list[DigestRef]:
    """Every digest-backed reference in ``manifest``, labelled by where it sits."""
    refs: list[DigestRef] = []
    subject = manifest.get("subject")
    if isinstance(subject, Mapping):
        refs.extend(_ref("subject.final_verdict", subject.get("final_verdict")))
    invocation = manifest.get("invocation")
    if isinstance(invocation, Mapping):
        refs.extend(_ref("invocation.config_source", invocation.get("config_source")))
    for key in ("environment", "source_repo", "scenarios"):
        refs.extend(_ref(key, manifest.get(key)))
    materials = manifest.get("materials")
    if isinstance(materials, list):
        for index, material in enumerate(materials):
            refs.extend(_ref(f"materials[{index}]", material))
    for index, entry in enumerate(report_entries(manifest)):
        refs.extend(_ref(f"subject.reports[{index}]", entry))
        refs.extend(
            _ref(f"subject.reports[{index}].runtime_manifest", entry.get("runtime_manifest"))
        )
    return refs
