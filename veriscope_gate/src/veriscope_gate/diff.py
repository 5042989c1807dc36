"""``veriscope diff``: what differs between two capsules (signature, controls, decisions)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from veriscope_gate.errors import IncompatibleRunsError
from veriscope_gate.view import CapsuleView, load_view

__all__ = ["CapsuleDiff", "diff_capsules", "render_diff"]


@attrs.frozen
class CapsuleDiff:
    a: str
    b: str
    compatible: bool
    signature_changes: list[dict[str, Any]]
    summary_changes: list[dict[str, Any]]
    decision_changes: list[dict[str, Any]]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k in sorted(value):
            out.update(_flatten(value[k], f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[dict[str, Any]]:
    fa, fb = _flatten(a), _flatten(b)
    return [{"path": k, "a": fa.get(k), "b": fb.get(k)} for k in sorted(set(fa) | set(fb))
            if fa.get(k) != fb.get(k)]


def _check(view: CapsuleView) -> None:
    if not view.governance.present or not view.governance.valid:
        detail = view.governance.problems[0] if view.governance.problems else "invalid"
        raise IncompatibleRunsError(f"{view.outdir}: diff needs a valid governance log ({detail})")
    if view.partial:
        raise IncompatibleRunsError(f"{view.outdir} is a partial capsule and cannot be diffed")


def diff_capsules(a: str | Path, b: str | Path) -> CapsuleDiff:
    """Compare two complete capsules with valid governance logs."""
    va, vb = load_view(a), load_view(b)
    _check(va)
    _check(vb)
    sig_a = {k: v for k, v in va.signature.items() if k != "created_ts_utc"}
    sig_b = {k: v for k, v in vb.signature.items() if k != "created_ts_utc"}
    keys = ("final_decision", "first_fail_iter", "counts", "run_status", "profile")
    summary_changes = _changes({k: va.summary.get(k) for k in keys}, {k: vb.summary.get(k) for k in keys})
    da = {g["iter"]: g.get("decision") for g in va.gates if isinstance(g.get("iter"), int)}
    db = {g["iter"]: g.get("decision") for g in vb.gates if isinstance(g.get("iter"), int)}
    decision_changes = [{"iter": i, "a": da.get(i), "b": db.get(i)} for i in sorted(set(da) | set(db))
                        if da.get(i) != db.get(i)]
    return CapsuleDiff(a=str(va.outdir), b=str(vb.outdir),
                       compatible=va.signature_hash == vb.signature_hash,
                       signature_changes=_changes(sig_a, sig_b), summary_changes=summary_changes,
                       decision_changes=decision_changes)


def render_diff(d: CapsuleDiff, fmt: str = "text") -> str:
    if fmt == "json":
        return json.dumps(attrs.asdict(d), indent=2, sort_keys=True) + "\n"
    lines = [f"veriscope diff {d.a} {d.b}",
             f"window signature: {'identical' if d.compatible else 'DIFFERENT (runs are not comparable)'}"]
    for title, rows in (("signature", d.signature_changes), ("summary", d.summary_changes)):
        if rows:
            lines.append(f"{title} changes:")
            lines += [f"  {r['path']}: {r['a']!r} -> {r['b']!r}" for r in rows]
    if d.decision_changes:
        lines.append("decision changes:")
        lines += [f"  iter {r['iter']}: {r['a']} -> {r['b']}" for r in d.decision_changes]
    if not (d.signature_changes or d.summary_changes or d.decision_changes):
        lines.append("no differences")
    return "\n".join(lines) + "\n"
