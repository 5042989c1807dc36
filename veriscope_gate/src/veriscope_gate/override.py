"""``veriscope override``: a human decision overlay (``manual_judgement.json``) on a capsule.

Raw gate records are never modified; the overlay is recorded in the governance log and shown
prominently by ``veriscope report``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from invarlock_core.atomic import atomic_write_json
from veriscope_gate.artifacts import ManualJudgement
from veriscope_gate.capsule import MANUAL, RUN_CONFIG, SUMMARY
from veriscope_gate.errors import ArtifactError, VeriscopeUsageError
from veriscope_gate.governance import append_event
from veriscope_gate.serialization import read_json_object, unstructure
from veriscope_gate.timeutil import is_utc_timestamp, utc_now

__all__ = ["apply_override"]


def apply_override(
    outdir: str | Path, *, status: Literal["pass", "fail"], reason: str,
    reviewer: str | None = None, ts_utc: str | None = None,
) -> ManualJudgement:
    """Write ``manual_judgement.json`` for the capsule in ``outdir`` and log a governance event."""
    root = Path(outdir)
    if status not in ("pass", "fail"):
        raise VeriscopeUsageError(f"--status must be pass or fail, got {status!r}")
    if not reason or not reason.strip():
        raise VeriscopeUsageError("--reason must not be empty")
    if ts_utc is not None and not is_utc_timestamp(ts_utc):
        raise VeriscopeUsageError(f"--ts-utc must be an ISO 8601 UTC timestamp ending in Z, got {ts_utc!r}")
    summary = read_json_object(root / SUMMARY)
    run_id = summary.get("run_id")
    if not isinstance(run_id, str) or not run_id:
        raise ArtifactError(f"{root / SUMMARY} has no run_id")
    judgement = ManualJudgement(run_id=run_id, status=status, reason=reason.strip(),
                                reviewer=reviewer, ts_utc=ts_utc or utc_now())
    atomic_write_json(root / MANUAL, unstructure(judgement))
    run_outdir = str(root.resolve())
    if (root / RUN_CONFIG).exists():
        run = read_json_object(root / RUN_CONFIG).get("run")
        if isinstance(run, dict) and isinstance(run.get("outdir"), str):
            run_outdir = run["outdir"]
    append_event(root, "manual_override", run_id=run_id, run_outdir=run_outdir,
                 payload={"status": status, "reason": judgement.reason, "reviewer": reviewer,
                          "raw_final_decision": summary.get("final_decision")})
    return judgement
