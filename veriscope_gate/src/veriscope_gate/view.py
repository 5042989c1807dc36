"""Read a capsule for reporting, comparing and calibrating (read-only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from veriscope_gate.capsule import MANUAL, RESULTS, RUN_CONFIG, SUMMARY, WINDOW_SIGNATURE
from veriscope_gate.errors import ArtifactError
from veriscope_gate.governance import GOVERNANCE_LOG, GovernanceCheck, check_log
from veriscope_gate.legacy import GOVERNANCE_HEAD, contract_errors
from veriscope_gate.serialization import read_json_object
from veriscope_gate.signature import window_signature_hash

__all__ = ["CapsuleView", "load_view", "post_warmup_far"]


@attrs.frozen
class CapsuleView:
    """The artifacts of one capsule as plain JSON data."""

    outdir: Path
    summary: dict[str, Any]
    signature: dict[str, Any]
    signature_hash: str
    results: dict[str, Any] | None
    run_config: dict[str, Any] | None
    manual: dict[str, Any] | None
    governance: GovernanceCheck
    legacy_missing: tuple[str, ...] = ()
    """Contract keys a reference v0 capsule lacks (``file: key``); empty for current capsules."""

    @property
    def partial(self) -> bool:
        return self.summary.get("partial") is True

    @property
    def gate_preset(self) -> str:
        profile = self.summary.get("profile")
        return str(profile.get("gate_preset")) if isinstance(profile, dict) else "?"

    @property
    def controls(self) -> dict[str, Any]:
        gates = self.signature.get("gates")
        controls = gates.get("controls") if isinstance(gates, dict) else None
        return controls if isinstance(controls, dict) else {}

    @property
    def gates(self) -> list[dict[str, Any]]:
        if self.results is None:
            return []
        return [g for g in self.results.get("gates") or [] if isinstance(g, dict)]

    @property
    def timing(self) -> dict[str, Any] | None:
        for source in (self.summary, self.results or {}):
            timing = source.get("timing")
            if isinstance(timing, dict):
                return timing
        return None


def _optional(
    outdir: Path, name: str, schema: str, missing: list[str] | None = None
) -> dict[str, Any] | None:
    if not (outdir / name).exists():
        return None
    data = read_json_object(outdir / name)
    problems, absent = contract_errors(name, data, schema)
    if problems:
        raise ArtifactError(f"{outdir / name} is invalid: {problems[0]}")
    if missing is not None:
        missing.extend(f"{name}: {key}" for key in absent)
    return data


def load_view(outdir: str | Path) -> CapsuleView:
    """Load a capsule; a missing or malformed summary/signature/results is an :class:`ArtifactError`."""
    root = Path(outdir)
    if not root.is_dir():
        raise ArtifactError(f"{root} is not a directory")
    missing: list[str] = []
    summary = _optional(root, SUMMARY, "results_summary.v1", missing)
    if summary is None:
        raise ArtifactError(f"{root / SUMMARY} is missing: the run did not finalise (see veriscope validate)")
    signature = _optional(root, WINDOW_SIGNATURE, "window_signature.v1")
    if signature is None:
        raise ArtifactError(f"{root / WINDOW_SIGNATURE} is missing")
    results = _optional(root, RESULTS, "results.v1", missing)
    run_config = _optional(root, RUN_CONFIG, "run_config_resolved.v1", missing)
    if (root / GOVERNANCE_LOG).exists() and GOVERNANCE_HEAD not in summary:
        missing.append(f"{SUMMARY}: {GOVERNANCE_HEAD}")
    run = run_config.get("run") if run_config else None
    run_outdir = run.get("outdir") if isinstance(run, dict) else None
    return CapsuleView(
        outdir=root,
        summary=summary,
        signature=signature,
        signature_hash=window_signature_hash(signature),
        results=results,
        run_config=run_config,
        manual=_optional(root, MANUAL, "manual_judgement.v1"),
        governance=check_log(root, run_id=str(summary.get("run_id")),
                             run_outdir=run_outdir if isinstance(run_outdir, str) else None),
        legacy_missing=tuple(missing),
    )


def post_warmup_far(view: CapsuleView, warmup: int | None = None) -> tuple[int, int] | None:
    """``(warn + fail, evaluated)`` over evaluated gates at ``iter ≥ warmup`` after the first evaluated gate."""
    if view.results is None:
        return None
    k = warmup if warmup is not None else int(view.controls.get("gate_warmup_iters") or 0)
    evaluated = [g for g in view.gates
                 if isinstance(g.get("audit"), dict) and g["audit"].get("evaluated") is True
                 and isinstance(g.get("iter"), int) and g["iter"] >= k]
    alarms = sum(1 for g in evaluated if g.get("decision") in ("warn", "fail"))
    return alarms, len(evaluated)
