"""``export_pack_html``: render the HTML page for an existing pack, with its verification status.

The pack is verified first, fully (signature, integrity, every bundled report and the final
verdict recomputed from them), and the outcome is shown in a banner at the top, so a page never
presents a verdict its reports do not support without saying so. The criteria shown are the
recorded ones, in the order the verdict decides them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from invarlock_core.atomic import atomic_write_text
from invarlock_core.errors import UsageError
from invarlock_packs import layout
from invarlock_packs.errors import PackMissingError
from invarlock_packs.html_page import PackView, render_pack_html
from invarlock_packs.inspect_pack import inspect_pack
from invarlock_packs.nested_reports import ReportSummary, summarize_report
from invarlock_packs.safe_paths import UnsafePathError, read_json_bounded
from invarlock_packs.verdict_rules import CRITERIA
from invarlock_packs.verify import verify_pack

__all__ = ["export_pack_html", "pack_view"]


def _json(path: Path) -> Any:
    try:
        return read_json_bounded(path)
    except (OSError, ValueError, UnsafePathError):
        return None


def _created_at(root: Path) -> str | None:
    manifest = _json(root / layout.MANIFEST)
    value = manifest.get("created_at") if isinstance(manifest, Mapping) else None
    return value if isinstance(value, str) else None


def _criterion_rank(item: tuple[Any, Any]) -> tuple[int, str]:
    name = str(item[0])
    return (CRITERIA.index(name) if name in CRITERIA else len(CRITERIA), name)


def pack_view(pack_dir: str | Path) -> PackView:
    """Everything the page shows about the pack at ``pack_dir``."""
    root = Path(pack_dir)
    inspection = inspect_pack(root)
    outcome = verify_pack(root)
    verdict_doc = _json(root / layout.FINAL_VERDICT_JSON)
    verdict: Mapping[str, Any] = verdict_doc if isinstance(verdict_doc, Mapping) else {}
    summaries: list[ReportSummary] = []
    for entry in inspection.reports:
        parts = entry.path.split("/")
        summaries.append(
            summarize_report(
                _json(root / entry.path),
                model=entry.model or (parts[1] if len(parts) > 4 else None),
                edit=entry.edit or (parts[2] if len(parts) > 4 else None),
                run=entry.run or (parts[3] if len(parts) > 4 else "run1"),
                category=entry.category,
            )
        )
    if outcome.ok:
        banner = (
            "Verified: signature, integrity, the bundled reports and the recomputed final verdict."
        )
    else:
        banner = f"NOT VERIFIED (exit {outcome.exit_code}): " + "; ".join(outcome.problems[:3])
    counts = verdict.get("counts")
    failed = verdict.get("failed_requirements")
    criteria = verdict.get("criteria")
    return PackView(
        title=f"Evidence pack {root.resolve().name}",
        verdict=str(verdict.get("verdict", inspection.verdict or "UNKNOWN")),
        evidence_level=inspection.evidence_level,
        signer=outcome.signer_fingerprint,
        created_at=_created_at(root),
        reports=tuple(summaries),
        failed_requirements=tuple(str(x) for x in failed) if isinstance(failed, list) else (),
        counts=tuple((str(k), str(v)) for k, v in sorted(counts.items()))
        if isinstance(counts, Mapping)
        else (),
        banner=banner,
        banner_ok=outcome.ok,
        criteria=tuple(
            (str(k), v)
            for k, v in sorted(criteria.items(), key=_criterion_rank)
            if isinstance(v, bool)
        )
        if isinstance(criteria, Mapping)
        else (),
    )


def export_pack_html(pack_dir: str | Path, output: str | Path) -> Path:
    """Write the page for the pack at ``pack_dir`` to ``output`` (outside the sealed pack)."""
    root = Path(pack_dir)
    target = Path(output)
    if not root.is_dir():
        raise PackMissingError(f"{root} is not a directory")
    if target.resolve().is_relative_to(root.resolve()):
        raise UsageError(
            "write the page outside the pack: files added to a sealed pack fail --strict"
        )
    return atomic_write_text(target, render_pack_html(pack_view(root)))
