"""``veriscope report``: a shareable report of one capsule (text, Markdown or HTML) and compare mode.

Every format is rendered from the same :class:`ReportModel`, so the sections never disagree.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any, Literal

import attrs

from veriscope_gate.capsule import (
    DEPENDENCIES_TXT,
    ENVIRONMENT_TXT,
    FIRST_FAIL,
    MANUAL,
    RESULTS,
    RUN_CONFIG,
    RUNNER_LOG,
    SUMMARY,
    WINDOW_SIGNATURE,
)
from veriscope_gate.errors import IncompatibleRunsError
from veriscope_gate.governance import GOVERNANCE_LOG
from veriscope_gate.svgplot import gate_plot_svg
from veriscope_gate.view import CapsuleView, load_view, post_warmup_far

__all__ = ["ReportModel", "build_model", "compare_report", "render_report"]

Format = Literal["text", "md", "html", "json"]


def _fmt(value: Any) -> str:
    return "-" if value is None else str(value)


def _pct(num: int, den: int) -> str:
    return f"{100.0 * num / den:.1f}% ({num}/{den})" if den else "n/a (0 evaluated post-warmup checks)"


@attrs.frozen
class ReportModel:
    title: str
    metadata: list[tuple[str, str]]
    final: str
    counts: dict[str, int]
    total_checks: int
    far: str
    overhead: str
    manual: list[str] | None
    artifacts: list[tuple[str, str]]
    governance: list[str]
    gates: list[dict[str, Any]]
    legacy: str | None = None
    """The "legacy capsule" line: which contract keys a reference v0 capsule lacks."""


def build_model(view: CapsuleView) -> ReportModel:
    s = view.summary
    counts = {k: int(v) for k, v in (s.get("counts") or {}).items() if isinstance(v, int)}
    total = len(view.gates) if view.results is not None else counts.get("evaluated", 0) + counts.get("skip", 0)
    metadata = [
        ("Run ID", f"`{_fmt(s.get('run_id'))}`"),
        ("Status", _fmt(s.get("run_status")) + (" (partial capsule)" if view.partial else "")),
        ("Wrapper Exit", _fmt(s.get("wrapper_exit_code"))),
        ("Runner Exit", _fmt(s.get("runner_exit_code"))
         + (f" ({s['runner_signal']})" if s.get("runner_signal") else "")),
        ("gate_preset", f"`{view.gate_preset}`"),
        ("Started", _fmt(s.get("started_ts_utc"))),
        ("Ended", _fmt(s.get("ended_ts_utc"))),
        ("Window Signature", f"`{view.signature_hash}`"),
    ]
    ffi = s.get("first_fail_iter")
    final = str(s.get("final_decision", "skip")).upper() + (f" (first FAIL at iter {ffi})" if ffi is not None else "")
    far_counts = post_warmup_far(view)
    far = _pct(*far_counts) if far_counts else "n/a (results.json missing)"
    timing = view.timing
    overhead = "n/a (no timing fields)"
    if timing and isinstance(timing.get("runner_wall_s"), int | float) and timing["runner_wall_s"] > 0:
        ratio = float(timing["gate_wall_s"]) / float(timing["runner_wall_s"])
        overhead = (f"{100 * ratio:.2f}% (gate {float(timing['gate_wall_s']):.2f} s of "
                    f"{float(timing['runner_wall_s']):.2f} s, from timing fields)")
    manual = None
    if view.manual is not None:
        m = view.manual
        manual = [
            f"Status: {str(m.get('status')).upper()} (operator overlay; raw gate records unchanged)",
            f"Reason: {m.get('reason')}",
            f"Reviewer: {_fmt(m.get('reviewer'))}",
            f"Recorded: {m.get('ts_utc')}",
        ]
    artifacts: list[tuple[str, str]] = []
    for label, name in (("Provenance", RUN_CONFIG), ("Window signature", WINDOW_SIGNATURE),
                        ("Detailed results", RESULTS), ("Summary", SUMMARY),
                        ("First fail marker", FIRST_FAIL), ("Manual judgement", MANUAL),
                        ("Governance log", GOVERNANCE_LOG), ("Environment", ENVIRONMENT_TXT),
                        ("Dependencies", DEPENDENCIES_TXT),
                        ("Runner logs", RUNNER_LOG)):
        if (view.outdir / name).exists():
            artifacts.append((label, f"`{name}`"))
        elif name in (RUN_CONFIG, RESULTS, ENVIRONMENT_TXT, DEPENDENCIES_TXT, RUNNER_LOG):
            artifacts.append((label, f"`{name}` (not emitted)"))
    g = view.governance
    governance = [
        f"Log present: {'yes' if g.present else 'no'}",
        f"Valid: {'yes' if g.valid else 'no'}" + ("" if g.valid or not g.present else f" ({g.problems[0]})"),
        f"Rev: {_fmt(g.rev)}",
    ]
    return ReportModel(
        title=f"Veriscope Report: `{view.outdir}`",
        metadata=metadata, final=final, counts=counts, total_checks=total, far=far,
        overhead=overhead, manual=manual, artifacts=artifacts, governance=governance,
        gates=view.gates,
        legacy=("Legacy capsule: missing " + ", ".join(view.legacy_missing)
                if view.legacy_missing else None),
    )


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str] | None = None) -> str:
    sep = [("-" * max(3, len(h)) + ":") if (align and align[i] == "r") else "-" * max(3, len(h))
           for i, h in enumerate(header)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(sep) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _gate_summary_row(m: ReportModel) -> list[str]:
    c = m.counts
    return [str(m.total_checks), str(c.get("evaluated", 0)), str(c.get("skip", 0)),
            str(c.get("warn", 0)), str(c.get("fail", 0))]


_GATE_HEADER = ["Total checks", "Evaluated", "SKIP", "WARN", "FAIL"]


def render_markdown(m: ReportModel) -> str:
    out = [f"# {m.title}", "", _md_table(["Field", "Value"], m.metadata), "",
           f"**Final decision: {m.final}**", ""]
    if m.legacy is not None:
        out += [f"> {m.legacy}", ""]
    if m.manual is not None:
        out += ["## Manual Judgement", "", *[f"- {line}" for line in m.manual], ""]
    out += ["## Gate Summary", "", _md_table(_GATE_HEADER, [_gate_summary_row(m)], ["r"] * 5), "",
            "## False Alarm Rate (control)", f"- FAR (post-warmup): {m.far}", "",
            "## Overhead", f"- Overhead (wall-clock): {m.overhead}", "",
            "## Artifacts", "", _md_table(["Artifact", "Path"], m.artifacts), "",
            "## Governance summary", *[f"- {line}" for line in m.governance], ""]
    return "\n".join(out)


def render_text(m: ReportModel) -> str:
    width = max(len(k) for k, _ in m.metadata)
    out = [m.title.replace("`", ""), ""]
    out += [f"  {k:<{width}}  {v.replace('`', '')}" for k, v in m.metadata]
    out += ["", f"Final decision: {m.final}", ""]
    if m.legacy is not None:
        out += [m.legacy, ""]
    if m.manual is not None:
        out += ["Manual Judgement", *[f"  {line}" for line in m.manual], ""]
    c = m.counts
    out += ["Gate Summary",
            f"  total={m.total_checks} evaluated={c.get('evaluated', 0)} skip={c.get('skip', 0)} "
            f"pass={c.get('pass', 0)} warn={c.get('warn', 0)} fail={c.get('fail', 0)}", "",
            f"FAR (post-warmup): {m.far}", f"Overhead (wall-clock): {m.overhead}", "", "Artifacts"]
    out += [f"  {label}: {path.replace('`', '')}" for label, path in m.artifacts]
    out += ["", "Governance summary", *[f"  {line}" for line in m.governance], ""]
    return "\n".join(out)


def render_html(m: ReportModel) -> str:
    def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
        head = "".join(f"<th>{escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{escape(c.replace('`', ''))}</td>" for c in r) + "</tr>"
                       for r in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    manual = ""
    if m.manual is not None:
        manual = ('<section class="manual"><h2>Manual Judgement</h2><ul>'
                  + "".join(f"<li>{escape(line)}</li>" for line in m.manual) + "</ul></section>")
    decisions = table(["iter", "decision", "reason", "worst_DW", "eps_eff", "p_value"], [
        [str(g.get("iter")), str(g.get("decision")), str((g.get("audit") or {}).get("reason")),
         _num((g.get("audit") or {}).get("worst_DW")), _num((g.get("audit") or {}).get("eps_eff")),
         _num((g.get("audit") or {}).get("p_value"))]
        for g in m.gates if g.get("decision") != "skip"
    ])
    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:60em;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;"
             "text-align:left}.final{font-size:1.2em;font-weight:bold}.manual{border:2px solid #ed6c02;"
             "padding:.5em 1em;background:#fff8e1}")
    return "".join([
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>{escape(m.title.replace('`', ''))}</title><style>{style}</style></head><body>",
        f"<h1>{escape(m.title.replace('`', ''))}</h1>",
        table(["Field", "Value"], m.metadata),
        f'<p class="final">Final decision: {escape(m.final)}</p>', manual,
        "<h2>Gate Summary</h2>", table(_GATE_HEADER, [_gate_summary_row(m)]),
        "<h2>worst_DW and eps_eff over iterations</h2>", gate_plot_svg(m.gates),
        f"<h2>False Alarm Rate (control)</h2><p>FAR (post-warmup): {escape(m.far)}</p>",
        f"<h2>Overhead</h2><p>Overhead (wall-clock): {escape(m.overhead)}</p>",
        "<h2>Evaluated gate checks</h2>", decisions,
        "<h2>Artifacts</h2>", table(["Artifact", "Path"], m.artifacts),
        "<h2>Governance summary</h2><ul>", "".join(f"<li>{escape(x)}</li>" for x in m.governance),
        "</ul></body></html>\n",
    ])


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else _fmt(value)


def render_report(outdir: str | Path, fmt: Format = "text") -> str:
    """The report of one capsule in ``fmt`` (text, md, html or json)."""
    view = load_view(outdir)
    model = build_model(view)
    if fmt == "md":
        return render_markdown(model)
    if fmt == "html":
        return render_html(model)
    if fmt == "json":
        data = attrs.asdict(model)
        data.pop("gates")
        return json.dumps(data, indent=2, sort_keys=True) + "\n"
    return render_text(model)


def _compare_row(view: CapsuleView) -> dict[str, Any]:
    far = post_warmup_far(view)
    s = view.summary
    return {
        "outdir": str(view.outdir),
        "run_id": s.get("run_id"),
        "gate_preset": view.gate_preset,
        "run_status": s.get("run_status"),
        "final_decision": s.get("final_decision"),
        "counts": s.get("counts"),
        "first_fail_iter": s.get("first_fail_iter"),
        "far_post_warmup": (far[0] / far[1]) if far and far[1] else None,
        "window_signature": view.signature_hash,
        "manual_judgement": (view.manual or {}).get("status"),
    }


def compare_report(
    outdirs: Sequence[str | Path], *, fmt: Format = "text", allow_incompatible: bool = False,
    allow_gate_preset_mismatch: bool = False,
) -> str:
    """Compare capsules; each needs a valid governance log and must not be partial."""
    views = [load_view(d) for d in outdirs]
    for v in views:
        if not v.governance.present or not v.governance.valid:
            detail = v.governance.problems[0] if v.governance.problems else "invalid"
            raise IncompatibleRunsError(f"{v.outdir}: compare mode needs a valid governance log ({detail})")
        if v.partial:
            raise IncompatibleRunsError(f"{v.outdir} is a partial capsule and cannot be compared")
    base = views[0]
    notes: list[str] = []
    for v in views[1:]:
        if v.signature_hash != base.signature_hash:
            msg = f"{v.outdir}: window signature differs from {base.outdir} (re-baseline before comparing)"
            if not allow_incompatible:
                raise IncompatibleRunsError(msg + "; pass --allow-incompatible to render anyway")
            notes.append("INCOMPATIBLE: " + msg)
        if v.gate_preset != base.gate_preset:
            msg = f"{v.outdir}: gate_preset {v.gate_preset!r} differs from {base.gate_preset!r}"
            if not allow_gate_preset_mismatch:
                raise IncompatibleRunsError(msg + "; pass --allow-gate-preset-mismatch to render anyway")
            notes.append("PRESET MISMATCH: " + msg)
    rows = [_compare_row(v) for v in views]
    if fmt == "json":
        return json.dumps({"runs": rows, "notes": notes, "compatible": not notes},
                          indent=2, sort_keys=True) + "\n"
    header = ["Run", "Run ID", "gate_preset", "Status", "Final", "Evaluated", "WARN", "FAIL",
              "First fail", "FAR", "Manual"]
    table_rows = []
    for r in rows:
        c = r["counts"] or {}
        far = "n/a" if r["far_post_warmup"] is None else f"{100 * r['far_post_warmup']:.1f}%"
        table_rows.append([r["outdir"], str(r["run_id"])[:12], r["gate_preset"], str(r["run_status"]),
                           str(r["final_decision"]), str(c.get("evaluated")), str(c.get("warn")),
                           str(c.get("fail")), _fmt(r["first_fail_iter"]), far,
                           _fmt(r["manual_judgement"])])
    if fmt == "md":
        out = ["# Veriscope Compare", "", _md_table(header, table_rows), ""]
        out += [f"- {n}" for n in notes] or ["- All runs share one window signature."]
        return "\n".join(out) + "\n"
    widths = [max(len(h), *(len(r[i]) for r in table_rows)) for i, h in enumerate(header)]
    lines = ["Veriscope Compare", "  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in table_rows]
    lines += notes or ["All runs share one window signature."]
    return "\n".join(lines) + "\n"
