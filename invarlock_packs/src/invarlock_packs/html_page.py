"""One self-contained, offline HTML page for a pack: what a reviewer wants at a glance.

Top to bottom: the final verdict and each of its criteria, a model x scenario matrix of the
expected against the observed outcome, a forest plot of every perplexity ratio with its CI against
the acceptance bound, a guard x scenario heatmap, the report table and per-guard charts.
No scripts, no external resources: inline CSS and SVG only, and a Content-Security-Policy that
forbids loading anything. Every value from a pack is HTML-escaped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from html import escape

import attrs

from invarlock_packs.html_charts import (
    forest_plot,
    guard_heatmap,
    scenario_heading,
    scenario_order,
)
from invarlock_packs.nested_reports import GuardSummary, ReportSummary
from invarlock_packs.verdict_rules import (
    EXPECTED_VERDICT,
    INFORMATIONAL_KINDS,
    RunObservation,
    ScenarioRule,
    decide,
)

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
td.ok{background:#dafbe1}td.bad{background:#ffebe9;font-weight:600}td.info{background:#fff8c5}
td small,th small{color:#57606a;font-weight:400}
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
    criteria: tuple[tuple[str, bool], ...] = ()
    """The recorded criteria; empty: recomputed from the reports' categories for the page."""


def _observed(verdicts: Sequence[str]) -> str:
    if not verdicts:
        return "–"
    return ", ".join(f"{v} ×{verdicts.count(v)}" for v in sorted(set(verdicts)))


def _judged(category: str, verdicts: Sequence[str]) -> tuple[str, str]:
    """(expected text, cell class): ok / bad / info (informational miss) / '' (unclassified)."""
    expected = EXPECTED_VERDICT.get(category)
    if expected is None or not verdicts:
        return "–", ""
    met = all(v == expected for v in verdicts)
    if category in INFORMATIONAL_KINDS:
        return f"{expected} (informational)", "ok" if met else "info"
    return expected, "ok" if met else "bad"


def _matrix(reports: Sequence[ReportSummary]) -> str:
    """Scenarios (rows, by kind) x models (columns): expected outcome over observed verdicts."""
    models = sorted({r.model for r in reports})
    cells: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in reports:
        cells[(r.model, r.edit)].append(r.verdict)
    head = "".join(f"<th>{escape(m)}</th>" for m in models)
    rows = []
    for scenario, category in scenario_order(reports):
        tds = []
        for model in models:
            verdicts = cells.get((model, scenario), [])
            expected, css = _judged(category, verdicts)
            tds.append(
                f'<td class="{css}"><small>expected {escape(expected)}</small><br>'
                f"{escape(_observed(verdicts))}</td>"
            )
        rows.append(f"<tr>{scenario_heading(scenario, category)}{''.join(tds)}</tr>")
    return (
        "<p>Each cell: the outcome the scenario's kind expects, then the observed report "
        "verdicts. Green: as expected; red: a gating expectation missed; yellow: an "
        "informational scenario that was not flagged.</p>"
        f'<table id="matrix"><thead><tr><th>scenario \\ model</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _derived_criteria(reports: Sequence[ReportSummary]) -> tuple[tuple[str, bool], ...]:
    """Criteria recomputed from the reports' categories (when the verdict records none)."""
    rules = [
        ScenarioRule(id=edit, kind=category, runs=None)
        for edit, category in sorted({(r.edit, r.category) for r in reports})
    ]
    observations = [
        RunObservation(r.model, r.edit, f"{r.model}/{r.edit}/{r.run}", r.verdict, r.category)
        for r in reports
    ]
    models = sorted({r.model for r in reports})
    criteria = decide(rules, observations, models).criteria
    return tuple(
        (name, value) for name, value in attrs.asdict(criteria).items() if isinstance(value, bool)
    )


def _criteria(view: PackView) -> str:
    criteria = view.criteria or _derived_criteria(view.reports)
    source = "" if view.criteria else " (recomputed from the bundled reports for this page)"
    rows = "".join(
        f'<tr><td>{escape(name)}</td><td class="{"PASS" if ok else "FAIL"}">'
        f"{'holds' if ok else 'FAILS'}</td></tr>"
        for name, ok in criteria
    )
    return (
        f"<h2>Criteria{escape(source)}</h2>"
        f'<table id="criteria"><thead><tr><th>criterion</th><th>outcome</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
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


def _rows(pairs: Sequence[tuple[str, str]]) -> str:
    return "".join(
        f"<tr><td>{escape(k)}</td><td><code>{escape(v)}</code></td></tr>" for k, v in pairs
    )


def render_pack_html(view: PackView) -> str:
    """The complete HTML document for ``view``."""
    verdict = view.verdict if view.verdict in {"PASS", "FAIL"} else "UNKNOWN"
    meta = [
        ("evidence level", view.evidence_level or "–"),
        ("signer", view.signer or "unsigned"),
        ("built", view.created_at or "–"),
        ("reports", str(len(view.reports))),
    ]
    meta_rows = _rows(meta)
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
{_criteria(view)}
{f"<h2>Failed requirements</h2><ul id='failed'>{failed}</ul>" if failed else ""}
<h2>Models and scenarios: expected and observed</h2>{_matrix(view.reports)}
<h2>Perplexity ratios against the acceptance bound</h2>{forest_plot(view.reports)}
<h2>Guard x scenario</h2>{guard_heatmap(view.reports)}
{f'<h2>Counts</h2><table class="meta" id="counts">{_rows(view.counts)}</table>' if view.counts else ""}
<h2>Reports</h2>{_details(view.reports)}
<h2>Guards</h2>{_charts(view.reports)}
<p><small>Check this pack offline: <code>invarlock pack verify &lt;pack&gt; --strict --expected-fingerprint &lt;signer&gt;</code></small></p>
</body></html>
"""
