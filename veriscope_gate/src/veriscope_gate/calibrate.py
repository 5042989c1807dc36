"""``veriscope calibrate``: FAR, Delay_W and overhead from a control and an injected capsule.

* FAR = (warn + fail) / evaluated over control gates with ``iter ≥ K`` (K = gate_warmup_iters);
* Delay_W = (first warn/fail at or after t0 − t0) / W with ``t0 = max(onset, K)``;
* overhead = gate wall time / runner wall time (timing fields; control run first).

Read-only on the capsules; the output is deterministic (sorted keys, no timestamps).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from invarlock_core.schema_validation import validate_instance
from veriscope_gate.serialization import as_object
from veriscope_gate.view import CapsuleView, load_view, post_warmup_far

__all__ = ["TARGETS", "calibrate", "calibration_json", "calibration_markdown"]

TARGETS = {"FAR": 0.05, "Delay_W": 2.0, "overhead": 0.05}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _onset(view: CapsuleView, onset: int | None) -> tuple[int | None, str]:
    if onset is not None:
        return onset, "cli:--onset"
    pathology = (view.results or {}).get("pathology")
    if isinstance(pathology, dict) and _int(pathology.get("onset_iter")) is not None:
        return int(pathology["onset_iter"]), "injected:results.json.pathology.onset_iter"
    return None, "missing"


def calibrate(control_dir: str | Path, injected_dir: str | Path, *, onset: int | None = None) -> dict[str, Any]:
    """The calibration summary (schema ``calibration.v1``)."""
    control = load_view(control_dir)
    injected = load_view(injected_dir)
    missing: list[str] = []
    w = _int(control.controls.get("gate_window"))
    w_source = "control:window_signature.gates.controls.gate_window"
    if w is None:
        w, w_source = _int(injected.controls.get("gate_window")), "injected:window_signature.gates.controls.gate_window"
    if w is None:
        missing.append("W")
        w_source = "missing"
    k = _int(control.controls.get("gate_warmup_iters"))
    warmup_source = "control:window_signature.gates.controls.gate_warmup_iters"
    if k is None:
        missing.append("K")
        warmup_source = "missing"
    far_counts = post_warmup_far(control, k or 0)
    far: float | None = None
    far_source = "control:results.json gates (evaluated, iter >= K)"
    if far_counts is None:
        missing.append("FAR")
        far_source = "missing"
    elif far_counts[1] == 0:
        missing.append("FAR (no evaluated post-warmup control gates)")
    else:
        far = far_counts[0] / far_counts[1]
    t_onset, onset_source = _onset(injected, onset)
    delay: float | None = None
    detected_at: int | None = None
    if t_onset is None:
        missing.append("onset")
    elif w is not None:
        t0 = max(t_onset, k or 0)
        detected_at = next((g["iter"] for g in injected.gates
                            if isinstance(g.get("iter"), int) and g["iter"] >= t0
                            and g.get("decision") in ("warn", "fail")), None)
        if detected_at is not None:
            delay = (detected_at - t0) / w
    overhead: float | None = None
    overhead_source = "missing"
    for label, view in (("control", control), ("injected", injected)):
        timing = view.timing
        if timing and isinstance(timing.get("runner_wall_s"), int | float) and timing["runner_wall_s"] > 0:
            overhead = round(float(timing["gate_wall_s"]) / float(timing["runner_wall_s"]), 6)
            overhead_source = f"{label}:timing.gate_wall_s/timing.runner_wall_s"
            break
    if overhead is None:
        missing.append("overhead")
    redactions = any(
        bool(((v.run_config or {}).get("env_capture") or {}).get("redactions_applied"))
        for v in (control, injected)
    )
    gates = as_object(control.signature.get("gates"))
    policy_rev = f"{control.gate_preset}@{gates.get('gate_controls_hash')}" if gates.get("gate_controls_hash") else None
    if missing:
        status = "incomplete"
    elif (far is not None and far <= TARGETS["FAR"] and delay is not None and delay <= TARGETS["Delay_W"]
          and overhead is not None and overhead <= TARGETS["overhead"]):
        status = "pass"
    else:
        status = "fail"
    out: dict[str, Any] = {
        "policy_rev": policy_rev,
        "W": w,
        "W_source": w_source,
        "K": k,
        "warmup_source": warmup_source,
        "FAR": None if far is None else round(far, 6),
        "FAR_source": far_source,
        "FAR_counts": None if far_counts is None else {"alarms": far_counts[0], "evaluated": far_counts[1]},
        "Delay_W": None if delay is None else round(delay, 6),
        "onset": t_onset,
        "onset_source": onset_source,
        "detected_at": detected_at,
        "overhead": overhead,
        "overhead_source": overhead_source,
        "missing_fields": missing,
        "redactions_applied": redactions,
        "calibration_status": status,
        "targets": TARGETS,
        "comparable": control.signature_hash == injected.signature_hash
        or control.controls == injected.controls,
        "control_run_id": control.summary.get("run_id"),
        "injected_run_id": injected.summary.get("run_id"),
    }
    validate_instance(out, "calibration.v1", "veriscope_gate", what="calibration summary")
    return out


def calibration_json(summary: dict[str, Any]) -> str:
    """Deterministic JSON text of a calibration summary."""
    return json.dumps(summary, indent=2, sort_keys=True, allow_nan=False) + "\n"


def calibration_markdown(summary: dict[str, Any]) -> str:
    """A Markdown rendering of a calibration summary (deterministic)."""

    def show(v: Any, pct: bool = False) -> str:
        if v is None:
            return "n/a"
        return f"{100 * v:.2f}%" if pct else str(v)

    lines = [
        "# Veriscope Calibration",
        "",
        f"- policy_rev: `{summary['policy_rev']}`",
        f"- calibration_status: **{summary['calibration_status']}**",
        "",
        "| Measure | Value | Target | Source |",
        "|---|---:|---:|---|",
        f"| FAR (post-warmup, control) | {show(summary['FAR'], True)} | <= 5% | {summary['FAR_source']} |",
        f"| Delay_W (injected) | {show(summary['Delay_W'])} | <= 2 | onset {show(summary['onset'])} ({summary['onset_source']}) |",
        f"| Overhead (wall-clock) | {show(summary['overhead'], True)} | <= 5% | {summary['overhead_source']} |",
        f"| W | {show(summary['W'])} | | {summary['W_source']} |",
        f"| K (warmup) | {show(summary['K'])} | | {summary['warmup_source']} |",
        "",
        f"- missing_fields: {', '.join(summary['missing_fields']) or 'none'}",
        f"- redactions_applied: {str(summary['redactions_applied']).lower()}",
        "",
    ]
    return "\n".join(lines)
