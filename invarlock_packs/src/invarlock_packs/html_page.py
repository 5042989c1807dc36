"""One self-contained, offline HTML page for a pack: verdict, model x scenario table, guard charts.

No scripts, no external resources: inline CSS and SVG only, and a Content-Security-Policy that
forbids loading anything. Every value from a pack is HTML-escaped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from html import escape

import attrs

from invarlock_packs.nested_reports import GuardSummary, ReportSummary

__all__ = ["PackView", "render_pack_html"]

_STATUS_COLOURS = {"pass": "#1a7f37", "fail": "#cf222e", "warn": "#bf8700", "skip": "#6e7781"}
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem;color:#1f2328;background:#fff}
h1{font-size:1.6rem;margin:0 0 .5rem}h2{font-size:1.2rem;margin-top:2rem}
.verdict{display:inline-block;padding:.4rem 1rem;border-radius:6px;color:#fff;font-weight:700;font-size:1.4rem}
.PASS{background:#1a7f37}.FAIL{background:#cf222e}.UNKNOWN{background:#6e7781}
table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #d0d7de;padding:.3rem .6rem;text-align:left}
th{background:#f6f8fa}td.PASS{background:#dafbe1;color:#1a7f37;font-weight:600}
td.FAIL{background:#ffebe9;color:#cf222e;font-weight:600}code{font-size:.85rem}
.meta td:first-child{font-weight:600}.chart{margin:.5rem 0 1.5rem}.banner{padding:.6rem;border-radius:6px;margin:1rem 0}
.banner.ok{background:#dafbe1}.banner.bad{background:#ffebe9}
"""


@attrs.frozen
class PackView:
    """What the page shows."""

    title: str
    verdict: str
    evidence_level: str | None
    signer: str | None
    created_at: str | None
    reports: tuple[ReportSummary, ...]
    failed_requirements: tuple[str, ...] = ()
    counts: tuple[tuple[str, str], ...] = ()
    banner: str | None = None
    banner_ok: bool = True


def _cell_class(verdicts: Sequence[str]) -> str:
    if verdicts and all(v == "PASS" for v in verdicts):
        return "PASS"
    return "FAIL" if any(v == "FAIL" for v in verdicts) else ""


def _matrix(reports: Sequence[ReportSummary]) -> str:
    models = sorted({r.model for r in reports})
    scenarios = sorted({r.edit for r in reports})
    cells: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in reports:
        cells[(r.model, r.edit)].append(r.verdict)
    head = "".join(f"<th>{escape(s)}</th>" for s in scenarios)
    rows = []
    for model in models:
        tds = []
        for scenario in scenarios:
            verdicts = cells.get((model, scenario), [])
            text = ", ".join(f"{v} ×{verdicts.count(v)}" for v in sorted(set(verdicts))) or "–"
            tds.append(f'<td class="{_cell_class(verdicts)}">{escape(text)}</td>')
        rows.append(f"<tr><th>{escape(model)}</th>{''.join(tds)}</tr>")
    return (
        f'<table id="matrix"><thead><tr><th>model \\ scenario</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def _details(reports: Sequence[ReportSummary]) -> str:
    rows = []
    for r in reports:
        ci = f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]" if r.ci_low is not None else ""
        guards = ", ".join(f"{g.name}: {g.status}" for g in r.guards) or "–"
        rows.append(
            f"<tr><td>{escape(r.model)}</td><td>{escape(r.edit)}</td><td>{escape(r.run)}</td>"
            f'<td>{escape(r.category)}</td><td class="{escape(r.verdict)}">{escape(r.verdict)}</td>'
            f"<td>{escape(r.metric or '–')} {_fmt(r.ratio)} {escape(ci)}</td><td>{escape(guards)}</td></tr>"
        )
    return (
        '<table id="reports"><thead><tr><th>model</th><th>scenario</th><th>run</th><th>category</th>'
        "<th>verdict</th><th>primary metric (ratio, CI)</th><th>guards</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _guard_chart(name: str, entries: Sequence[tuple[str, GuardSummary]]) -> str:
    bar_h, width, max_chars = 18, 320, 72
    longest = max((len(label[:max_chars]) for label, _ in entries), default=10)
    label_w = 16 + int(6.5 * longest)  # ~6.5 px per character at 11 px
    values = [g.value for _, g in entries if g.value is not None]
    top = max((abs(v) for v in values), default=0.0) or 1.0
    parts = []
    for index, (label, guard) in enumerate(entries):
        y = index * (bar_h + 4)
        length = 4 if guard.value is None else max(2.0, width * abs(guard.value) / top)
        colour = _STATUS_COLOURS.get(guard.status, "#6e7781")
        parts.append(
            f'<text x="0" y="{y + 13}" font-size="11">{escape(label[:max_chars])}</text>'
            f'<rect x="{label_w}" y="{y}" width="{length:.1f}" height="{bar_h}" fill="{colour}">'
            f"<title>{escape(label)}: {escape(guard.status)} {_fmt(guard.value)}</title></rect>"
            f'<text x="{label_w + length + 4:.1f}" y="{y + 13}" font-size="11">'
            f"{escape(guard.status)} {_fmt(guard.value)}</text>"
        )
    height = max(1, len(entries)) * (bar_h + 4)
    return (
        f'<div class="chart" data-guard="{escape(name)}"><h3>{escape(name)}</h3>'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + width + 90}" height="{height}" '
        f'role="img" aria-label="guard {escape(name)}">{"".join(parts)}</svg></div>'
    )


def _charts(reports: Sequence[ReportSummary]) -> str:
    by_guard: dict[str, list[tuple[str, GuardSummary]]] = defaultdict(list)
    for r in reports:
        for g in r.guards:
            by_guard[g.name].append((f"{r.model} / {r.edit} / {r.run}", g))
    if not by_guard:
        return "<p>No guard results in the bundled reports.</p>"
    legend = (
        "<p>Bar length: violations the guard recorded in each report; colour: the guard's "
        "outcome (green pass, amber warn, red fail).</p>"
    )
    return legend + "".join(_guard_chart(name, by_guard[name]) for name in sorted(by_guard))


def render_pack_html(view: PackView) -> str:
    """The complete HTML document for ``view``."""
    verdict = view.verdict if view.verdict in {"PASS", "FAIL"} else "UNKNOWN"
    meta = [
        ("evidence level", view.evidence_level or "–"),
        ("signer", view.signer or "unsigned"),
        ("built", view.created_at or "–"),
        ("reports", str(len(view.reports))),
    ]
    meta.extend(view.counts)
    meta_rows = "".join(
        f"<tr><td>{escape(k)}</td><td><code>{escape(v)}</code></td></tr>" for k, v in meta
    )
    failed = "".join(f"<li>{escape(f)}</li>" for f in view.failed_requirements)
    banner = (
        f'<div class="banner {"ok" if view.banner_ok else "bad"}" id="banner">{escape(view.banner)}</div>'
        if view.banner
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(view.title)}</title><style>{_CSS}</style></head>
<body><h1>{escape(view.title)}</h1>
<p>Final verdict: <span class="verdict {verdict}" id="verdict">{verdict}</span></p>{banner}
<table class="meta">{meta_rows}</table>
{f"<h2>Failed requirements</h2><ul id='failed'>{failed}</ul>" if failed else ""}
<h2>Models and scenarios</h2>{_matrix(view.reports)}
<h2>Reports</h2>{_details(view.reports)}
<h2>Guards</h2>{_charts(view.reports)}
<p><small>Check this pack offline: <code>invarlock pack verify &lt;pack&gt; --strict --expected-fingerprint &lt;signer&gt;</code></small></p>
</body></html>
"""
