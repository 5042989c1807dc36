"""``evaluation_report.md``: the human-readable face of an evaluation report."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["render_markdown"]


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1e6 else f"{value:.3e}"
    return str(value)


def _primary(pm: Mapping[str, Any], policy: Mapping[str, Any]) -> list[str]:
    ci = pm.get("ci")
    ci_text = f"[{_num(ci[0])}, {_num(ci[1])}]" if ci else "n/a"
    lo, hi = policy["acceptance_range"]
    boot = pm.get("bootstrap") or {}
    return [
        "## Primary metric",
        "",
        "| quantity | value |",
        "| --- | --- |",
        f"| perplexity ratio (subject / baseline) | {_num(pm.get('ratio'))} |",
        f"| {100 * (1 - float(policy['bootstrap']['alpha'])):.0f}% CI (BCa) | {ci_text} |",
        f"| acceptance range ({policy['acceptance_source']}) | [{_num(float(lo))}, {_num(float(hi))}] + {policy['tolerance']} |",
        f"| baseline / subject perplexity | {_num(pm.get('baseline_ppl'))} / {_num(pm.get('subject_ppl'))} |",
        f"| preview ratio, drift (final / preview) | {_num(pm.get('preview_ratio'))}, {_num(pm.get('drift'))} |",
        f"| q95 of per-window Δlogloss | {_num(pm.get('delta_q95'))} |",
        f"| windows (final / preview) | {pm['windows']['final']} / {pm['windows']['preview']} |",
        f"| scored tokens (final / preview) | {pm['tokens']['final']} / {pm['tokens']['preview']} |",
        f"| bootstrap | {boot.get('method', 'n/a')}, {boot.get('replicates', 'n/a')} replicates, seed {boot.get('seed', 'n/a')} |",
        "",
    ]


def _guards(report: Mapping[str, Any]) -> list[str]:
    lines = ["## Guards", ""]
    chain = report["guard_chain"]
    if chain.get("note"):
        lines += [f"_{chain['note']}_", ""]
    if report["guards"]:
        lines += ["| guard | passed | severity | first violation | seconds |", "| --- | --- | --- | --- | --- |"]
        for guard in report["guards"]:
            first = guard["violations"][0]["message"] if guard["violations"] else ""
            lines.append(
                f"| {guard['name']} | {'yes' if guard['passed'] else 'NO'} | {guard['severity']} "
                f"| {first.replace('|', '/')} | {guard['seconds']:.2f} |"
            )
        lines.append("")
    probe = report.get("probe")
    if probe:
        if probe["status"] == "written":
            lines += [
                f"Probe sidecar `{probe['file']}` written by the {probe['guard']} guard "
                f"(`{probe['sha256']}`).",
                "",
            ]
        else:
            reason = f": {probe['reason']}" if probe.get("reason") else ""
            lines += [f"Probe sidecar `{probe['file']}` {probe['status']}{reason}.", ""]
    return lines


def render_markdown(report: Mapping[str, Any]) -> str:
    """Render ``report`` as Markdown (verdict and reasons first)."""
    pm, policy = report["primary_metric"], report["policy"]
    lines = [
        "# InvarLock evaluation report",
        "",
        f"**Verdict: {report['verdict']}** (tier {policy['tier']}, profile {policy['profile']})",
        "",
    ]
    if report["reasons"]:
        lines += ["Reasons:", "", *[f"- {r}" for r in report["reasons"]], ""]
    if report["warnings"]:
        lines += ["Warnings:", "", *[f"- {w}" for w in report["warnings"]], ""]
    lines += [
        f"- baseline: `{report['baseline']['path']}` ({report['baseline']['digest'][:19]}…)",
        f"- subject: `{report['subject']['path']}` ({report['subject']['digest'][:19]}…), "
        f"edit: {report['subject']['label']}",
        f"- dataset: {report['dataset']['provider']} ({report['dataset']['source']}, "
        f"license {report['dataset']['license']})",
        f"- windows: seq_len {report['windows']['seq_len']}, stride {report['windows']['stride']}, "
        f"seed {report['windows']['seed']}, digest {report['windows']['digest'][:19]}…",
        "",
        *_primary(pm, policy),
        *_guards(report),
        "## Validation",
        "",
        *[f"- {name}: {'ok' if ok else 'FAILED'}" for name, ok in sorted(report["validation"].items())],
        "",
        "## Integrity",
        "",
        f"Report digest `{report['digests']['report']}`. Check it with "
        "`invarlock verify evaluation.report.json`.",
        "",
    ]
    return "\n".join(lines)
