"""The pack page's two charts: a forest plot of perplexity ratios and a guard x scenario heatmap.

Both are plain inline SVG or HTML (no scripts), built from report summaries. The forest plot
draws each report's paired ratio with its confidence interval on a log axis, against the
acceptance bound the report was gated on; the heatmap shades each guard x scenario cell by the
share of that scenario's reports the guard failed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from html import escape
from typing import Final

from invarlock_packs.nested_reports import ReportSummary
from invarlock_packs.verdict_rules import KINDS

__all__ = ["forest_plot", "guard_heatmap", "scenario_heading", "scenario_order"]

_ROW: Final = 20
_PLOT_W: Final = 460
_GOOD: Final = "#1a7f37"
_BAD: Final = "#cf222e"
_CHAR_PX: Final = 6.5  # ~6.5 px per character at 11 px
_TICK_GAP: Final = 34
_ROUND_TICKS: Final = (0.5, 0.8, 0.9, 0.95, 1.2, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0)
Scale = Callable[[float], float]


def scenario_order(reports: Sequence[ReportSummary]) -> list[tuple[str, str]]:
    """``(scenario, category)`` pairs, clean first, then by kind as the verdict lists them."""
    pairs = {(r.edit, r.category) for r in reports}
    rank = {kind: index for index, kind in enumerate(KINDS)}
    return sorted(pairs, key=lambda p: (rank.get(p[1], len(KINDS)), p[0]))


def scenario_heading(scenario: str, category: str) -> str:
    """A row heading: the scenario and, beneath it, its category."""
    return f"<th>{escape(scenario)}<br><small>{escape(category)}</small></th>"


def _label(r: ReportSummary) -> str:
    return f"{r.model} / {r.edit} / {r.run}"


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _extent(rows: Sequence[ReportSummary]) -> tuple[float, float]:
    values = [1.0]
    for r in rows:
        values += [v for v in (r.ratio, r.ci_low, r.ci_high, r.bound) if v is not None and v > 0]
    return math.log(min(values) * 0.98), math.log(max(values) * 1.02)


def _outside(r: ReportSummary) -> bool:
    """Whether the ratio or its CI's upper end lies beyond the acceptance bound."""
    if r.bound is None or r.ratio is None:
        return False
    return r.ratio > r.bound or (r.ci_high is not None and r.ci_high > r.bound)


def _forest_row(r: ReportSummary, y: int, scale: Scale, label_w: int) -> str:
    assert r.ratio is not None  # rows are the reports with a finite ratio
    colour = _BAD if _outside(r) else _GOOD
    mid = y + _ROW // 2
    ci = ""
    if r.ci_low is not None and r.ci_high is not None and r.ci_low > 0:
        ci = (
            f'<line x1="{scale(r.ci_low):.1f}" x2="{scale(r.ci_high):.1f}" y1="{mid}" y2="{mid}" '
            f'stroke="{colour}" stroke-width="2"/>'
        )
    bound = ""
    if r.bound is not None:
        bx = scale(r.bound)
        bound = (
            f'<line class="bound" x1="{bx:.1f}" x2="{bx:.1f}" y1="{y + 2}" y2="{y + _ROW - 2}" '
            'stroke="#1f2328" stroke-dasharray="3,2"/>'
        )
    interval = f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]" if r.ci_low and r.ci_high else "no CI"
    title = f"{_label(r)}: ratio {_fmt(r.ratio)} {interval}"
    if r.bound is not None:
        title += f", bound {_fmt(r.bound)}"
    return (
        f'<text x="0" y="{mid + 4}" font-size="11">{escape(_label(r)[:72])}</text>{bound}{ci}'
        f'<circle cx="{scale(r.ratio):.1f}" cy="{mid}" r="4" fill="{colour}">'
        f"<title>{escape(title)}</title></circle>"
        f'<text x="{label_w + _PLOT_W + 8}" y="{mid + 4}" font-size="11">'
        f"{_fmt(r.ratio)} {escape(interval)}</text>"
    )


def _axis(ticks: Sequence[float], scale: Scale, label_w: int, height: int) -> str:
    parts = [
        f'<line x1="{label_w}" x2="{label_w + _PLOT_W}" y1="{height}" y2="{height}" stroke="#6e7781"/>',
        f'<line x1="{scale(1.0):.1f}" x2="{scale(1.0):.1f}" y1="0" y2="{height}" '
        'stroke="#d0d7de"/>',
    ]
    placed: list[float] = []
    for tick in ticks:  # in priority order; a label too close to a placed one is dropped
        x = scale(tick)
        if all(abs(x - other) >= _TICK_GAP for other in placed):
            placed.append(x)
            parts.append(
                f'<text x="{x:.1f}" y="{height + 14}" font-size="10" '
                f'text-anchor="middle">{_fmt(tick)}</text>'
            )
    return "".join(parts)


def _ticks(rows: Sequence[ReportSummary], low: float, high: float) -> list[float]:
    """Axis labels by priority: 1.0, the acceptance bounds, then round values in range."""
    bounds = sorted({round(r.bound, 3) for r in rows if r.bound is not None})
    inside = [v for v in _ROUND_TICKS if low <= math.log(v) <= high]
    return [1.0, *bounds, *inside]


def _bound_list(rows: Sequence[ReportSummary]) -> str:
    bounds = sorted({_fmt(r.bound) for r in rows if r.bound is not None})
    return ", ".join(bounds) or "none recorded"


def forest_plot(reports: Sequence[ReportSummary]) -> str:
    """Every report's ratio and CI (log axis) against its acceptance bound (dashed tick)."""
    rows = [r for r in reports if r.ratio is not None and r.ratio > 0]
    rows.sort(key=lambda r: (r.model, r.edit, r.run))
    without = [r for r in reports if r not in rows]
    if not rows:
        return "<p>No finite perplexity ratios in the bundled reports.</p>"
    low, high = _extent(rows)
    label_w = 16 + int(_CHAR_PX * max(len(_label(r)[:72]) for r in rows))

    def scale(value: float) -> float:
        return label_w + _PLOT_W * (math.log(value) - low) / (high - low)

    body = "".join(_forest_row(r, i * _ROW, scale, label_w) for i, r in enumerate(rows))
    height = len(rows) * _ROW
    svg = (
        f'<svg id="forest" xmlns="http://www.w3.org/2000/svg" width="{label_w + _PLOT_W + 200}" '
        f'height="{height + 20}" role="img" aria-label="forest plot of perplexity ratios">'
        f"{_axis(_ticks(rows, low, high), scale, label_w, height)}{body}</svg>"
    )
    note = (
        "<p>Each row: the subject/baseline perplexity ratio (dot) and its confidence interval "
        "(line) on a log axis; the dashed tick is the acceptance bound the report was gated on. "
        "Red: the ratio or the interval's upper end lies beyond the bound. Bounds: "
        f'<span id="bounds">{escape(_bound_list(rows))}</span>.</p>'
    )
    missing = ""
    if without:
        names = ", ".join(f"{_label(r)} ({r.verdict})" for r in without)
        missing = f'<p id="no-ratio">No finite ratio: {escape(names)}</p>'
    return note + svg + missing


def _cell(flagged: int, runs: int) -> str:
    share = flagged / runs if runs else 0.0
    alpha = 0.12 + 0.78 * share if flagged else 0.0
    colour = "#fff" if share > 0.6 else "#1f2328"
    return (
        f'<td style="background:rgba(207,34,46,{alpha:.2f});color:{colour};text-align:center" '
        f'data-share="{share:.2f}">{flagged}/{runs}</td>'
    )


def guard_heatmap(reports: Sequence[ReportSummary]) -> str:
    """Scenarios (rows) x guards (columns): how many of the scenario's reports each guard failed."""
    guards = sorted({g.name for r in reports for g in r.guards})
    if not guards:
        return "<p>No guard results in the bundled reports.</p>"
    runs: dict[str, int] = defaultdict(int)
    flagged: dict[tuple[str, str], int] = defaultdict(int)
    for r in reports:
        runs[r.edit] += 1
        for g in r.guards:
            flagged[(g.name, r.edit)] += int(g.status == "fail")
    head = "".join(f"<th>{escape(g)}</th>" for g in guards)
    rows = "".join(
        f"<tr>{scenario_heading(s, c)}"
        f"{''.join(_cell(flagged[(g, s)], runs[s]) for g in guards)}</tr>"
        for s, c in scenario_order(reports)
    )
    return (
        "<p>Cell: reports of the scenario that the guard failed, out of all its reports; "
        "darker is more.</p>"
        f'<table id="heatmap"><thead><tr><th>scenario \\ guard</th>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )
