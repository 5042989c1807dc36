"""An inline SVG line chart of worst_DW and eps_eff over iterations, with decisions marked."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

__all__ = ["gate_plot_svg"]

_COLORS = {"pass": "#2e7d32", "warn": "#ed6c02", "fail": "#c62828", "skip": "#9e9e9e"}


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def gate_plot_svg(gates: Sequence[dict[str, Any]], *, width: int = 760, height: int = 300) -> str:
    """Self-contained ``<svg>``: worst_DW (solid), eps_eff (dashed), one marker per decision."""
    pad_l, pad_r, pad_t, pad_b = 56, 16, 16, 40
    if not any(isinstance(g.get("iter"), int) for g in gates):
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="60" role="img">'
                '<text x="10" y="30">no gate checks recorded</text></svg>')
    points: list[tuple[int, float | None, float | None, str]] = []
    for g in gates:
        raw = g.get("audit")
        audit: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if isinstance(g.get("iter"), int):
            points.append((int(g["iter"]), _num(audit.get("worst_DW")), _num(audit.get("eps_eff")),
                           str(g.get("decision"))))
    iters = [p[0] for p in points]
    values = [v for _, dw, eps, _ in points for v in (dw, eps) if v is not None]
    y_max = max([0.25, *values]) * 1.1
    x_min, x_max = min(iters), max(iters)
    span = max(1, x_max - x_min)

    def sx(x: float) -> float:
        return pad_l + (x - x_min) / span * (width - pad_l - pad_r)

    def sy(y: float) -> float:
        return height - pad_b - y / y_max * (height - pad_t - pad_b)

    def path(idx: int) -> str:
        segs = []
        for p in points:
            value = p[1] if idx == 1 else p[2]
            if value is not None:
                segs.append(f"{sx(p[0]):.1f},{sy(value):.1f}")
        return " ".join(segs)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="worst_DW and eps_eff over iterations">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<line x1="{pad_l}" y1="{height - pad_b}" x2="{width - pad_r}" y2="{height - pad_b}" stroke="#444"/>',
        f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{height - pad_b}" stroke="#444"/>',
    ]
    for frac in (0.0, 0.5, 1.0):
        yv = y_max * frac
        parts.append(f'<text x="{pad_l - 6}" y="{sy(yv) + 4:.1f}" font-size="11" text-anchor="end">{yv:.2f}</text>')
    for xv in (x_min, (x_min + x_max) // 2, x_max):
        parts.append(f'<text x="{sx(xv):.1f}" y="{height - pad_b + 16}" font-size="11" text-anchor="middle">{xv}</text>')
    parts.append(f'<text x="{(width + pad_l) / 2:.0f}" y="{height - 6}" font-size="12" text-anchor="middle">iteration</text>')
    parts.append(f'<polyline class="worst-dw" fill="none" stroke="#1565c0" stroke-width="2" points="{path(1)}"/>')
    parts.append(f'<polyline class="eps-eff" fill="none" stroke="#6a1b9a" stroke-width="1.5" '
                 f'stroke-dasharray="6 4" points="{path(2)}"/>')
    for it, dw, _eps, decision in points:
        y = dw if dw is not None else 0.0
        color = _COLORS.get(decision, "#000")
        parts.append(f'<circle class="decision-{escape(decision)}" cx="{sx(it):.1f}" cy="{sy(y):.1f}" r="4" '
                     f'fill="{color}"><title>iter {it}: {escape(decision)}</title></circle>')
    legend = [("worst_DW", "#1565c0"), ("eps_eff", "#6a1b9a")] + [(k, v) for k, v in _COLORS.items()]
    for i, (label, color) in enumerate(legend):
        x = pad_l + 8 + i * 92
        parts.append(f'<rect x="{x}" y="{pad_t}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{x + 14}" y="{pad_t + 9}" font-size="11">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)
