"""The pack's ``README.md``: a reviewer summary written at build time."""

from __future__ import annotations

from collections.abc import Sequence

from invarlock_packs.nested_reports import ReportSummary

__all__ = ["render_readme"]


def render_readme(
    *,
    verdict: str,
    evidence_level: str,
    signer: str | None,
    created_at: str,
    reports: Sequence[tuple[str, ReportSummary]],
    failed_requirements: Sequence[str],
) -> str:
    """Markdown for the reviewer: verdict, how to verify, what the pack holds."""
    lines = [
        "# InvarLock evidence pack",
        "",
        f"- Final verdict: **{verdict}**",
        f"- Evidence level: `{evidence_level}`",
        f"- Signer: `{signer}`"
        if signer
        else "- Signer: none (unsigned: `invarlock pack verify` fails closed)",
        f"- Built: {created_at}",
        f"- Reports: {len(reports)}",
        "",
    ]
    if failed_requirements:
        lines += (
            ["## Failed requirements", ""] + [f"- {item}" for item in failed_requirements] + [""]
        )
    lines += [
        "## Verify this pack",
        "",
        "No ML stack is needed; run these from any machine with `invarlock-packs` installed:",
        "",
        "```bash",
        "invarlock pack verify . --strict --report-assurance strict \\",
        "    --expected-fingerprint <the signer fingerprint you obtained from the producer>",
        "sha256sum -c checksums.sha256",
        "jq -e . manifest.json manifest.signature.json",
        "```",
        "",
        "A valid signature proves that `manifest.json` (and through `checksums_sha256_digest` every",
        "listed file) is unchanged since the key holder signed it. It proves *who* signed only when",
        "you pin the fingerprint you expected, obtained from the signer through another channel:",
        "the signer named above is what the pack claims, so copying it from here pins nothing.",
        "",
        "## Reports",
        "",
        "| model | scenario | run | category | verdict | path |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for path, r in reports:
        lines.append(f"| {r.model} | {r.edit} | {r.run} | {r.category} | {r.verdict} | `{path}` |")
    return "\n".join(lines) + "\n"
