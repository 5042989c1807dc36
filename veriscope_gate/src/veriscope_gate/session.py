"""``GateSession``: record probes, evaluate gates, and write the run capsule.

The library entry point for custom training loops (the Trainer callback and the built-in
runners use it too)::

    session = GateSession("out/run1", gate_preset="tuned_v0")
    for step in range(steps):
        ...
        if step % session.controls.metric_interval == 0:
            session.record(step, metric_values, loss=loss_value)
        if session.is_gate_step(step):
            record = session.evaluate(step)   # pass / warn / fail / skip, with its audit
    session.close()

Artifacts are written only when ``write=True`` (world rank 0); every rank that feeds the same
values gets the same decisions.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from veriscope_gate.artifacts import (
    MetricRecord,
    Profile,
    Results,
    RunStatus,
    Summary,
    Timing,
    WindowSignatureRef,
    finite_or_none,
)
from veriscope_gate.capsule import (
    RUN_CONFIG,
    WINDOW_SIGNATURE,
    build_run_config,
    write_results,
    write_run_config,
)
from veriscope_gate.controls import GateControls, load_preset
from veriscope_gate.engine import GateEngine
from veriscope_gate.errors import ArtifactError
from veriscope_gate.governance import append_event, seal_results
from veriscope_gate.metrics import Metric
from veriscope_gate.records import GateRecord, count_decisions, final_decision
from veriscope_gate.serialization import read_json_object
from veriscope_gate.signature import build_window_signature, window_signature_hash
from veriscope_gate.timeutil import utc_now

__all__ = ["GateSession", "new_run_id"]


def new_run_id() -> str:
    """A fresh run id (the join key of every artifact of a run)."""
    return uuid.uuid4().hex


def _default_ranges(metrics: Sequence[Metric] | None) -> dict[str, tuple[float, float]]:
    if metrics is None:
        from veriscope_gate.plugins import get_metric_registry

        metrics = [reg.item for reg in get_metric_registry()]
    return {m.name: m.calibration_range for m in metrics}


class GateSession:
    """One gated run: a :class:`GateEngine` plus the artifacts of its capsule."""

    def __init__(
        self,
        outdir: str | Path,
        *,
        gate_preset: str = "tuned_v0",
        overrides: Mapping[str, Any] | None = None,
        controls: GateControls | None = None,
        run_id: str | None = None,
        metrics: Sequence[Metric] | None = None,
        runner: Mapping[str, Any] | None = None,
        probe: Mapping[str, Any] | None = None,
        pathology: Mapping[str, Any] | None = None,
        write: bool = True,
    ) -> None:
        self.outdir = Path(outdir)
        self.gate_preset = gate_preset
        self.overrides = dict(overrides) if overrides else None
        self.controls = controls if controls is not None else load_preset(gate_preset, overrides)
        self.ranges = _default_ranges(metrics)
        self.engine = GateEngine(self.controls, self.ranges)
        self.write = write
        self.pathology = dict(pathology) if pathology else None
        self.started_ts_utc = utc_now()
        self._t0 = time.perf_counter()
        self.gate_wall_s = 0.0
        self.gates: list[GateRecord] = []
        self.metrics: list[MetricRecord] = []
        self.closed = False
        self.run_id = run_id or self._existing_run_id() or new_run_id()
        signature = build_window_signature(
            gate_preset=gate_preset,
            controls=self.controls,
            ranges=self.ranges,
            runner=runner or {"kind": "library"},
            probe=probe or {},
        )
        if write:
            self.outdir.mkdir(parents=True, exist_ok=True)
            signature = self._adopt_or_write_signature(signature)
            if not (self.outdir / RUN_CONFIG).exists():
                import sys

                write_run_config(
                    self.outdir,
                    build_run_config(self.outdir, kind=str((runner or {}).get("kind", "library")),
                                     run_id=self.run_id, gate_preset=gate_preset,
                                     veriscope_argv=list(sys.argv)),
                )
            append_event(self.outdir, "session_opened", run_id=self.run_id,
                         run_outdir=self._run_outdir(),
                         payload={"gate_preset": gate_preset,
                                  "gate_controls_hash": self.controls.controls_hash()})
        self.signature = signature
        self.signature_hash = window_signature_hash(signature)

    def _existing_run_id(self) -> str | None:
        path = self.outdir / RUN_CONFIG
        if not path.exists():
            return None
        run = read_json_object(path).get("run")
        rid = run.get("run_id") if isinstance(run, dict) else None
        return rid if isinstance(rid, str) and rid else None

    def _run_outdir(self) -> str:
        path = self.outdir / RUN_CONFIG
        if path.exists():
            run = read_json_object(path).get("run")
            if isinstance(run, dict) and isinstance(run.get("outdir"), str):
                return str(run["outdir"])
        return str(self.outdir.resolve())

    def _adopt_or_write_signature(self, signature: dict[str, Any]) -> dict[str, Any]:
        from invarlock_core.atomic import atomic_write_json

        path = self.outdir / WINDOW_SIGNATURE
        if path.exists():
            existing = read_json_object(path)
            theirs = existing.get("gates", {}).get("gate_controls_hash")
            if theirs != self.controls.controls_hash():
                raise ArtifactError(
                    f"{path} was written for other gate controls ({theirs}); "
                    "use a fresh --outdir or the same preset and overrides"
                )
            return existing
        atomic_write_json(path, signature)
        return signature

    # -- the gate loop --------------------------------------------------------------------
    def is_probe_step(self, iteration: int) -> bool:
        return iteration % self.controls.metric_interval == 0

    def is_gate_step(self, iteration: int) -> bool:
        return iteration > 0 and iteration % self.controls.gate_window == 0

    def add_gate_time(self, seconds: float) -> None:
        """Account probe time spent outside the session (e.g. computing sketches)."""
        self.gate_wall_s += seconds

    def record(self, iteration: int, values: Mapping[str, float], loss: float | None = None) -> None:
        """Record one probe's metric values (and the training loss, for the gain check)."""
        t = time.perf_counter()
        self.engine.record(iteration, values, loss)
        self.metrics.append(
            MetricRecord(
                iter=int(iteration),
                values={k: finite_or_none(float(v)) for k, v in sorted(values.items())},
                loss=finite_or_none(loss) if loss is not None else None,
            )
        )
        self.gate_wall_s += time.perf_counter() - t

    def evaluate(self, iteration: int) -> GateRecord:
        """Run the gate check at ``iteration``; the record is kept for the capsule."""
        t = time.perf_counter()
        record = self.engine.check(int(iteration))
        self.gates.append(record)
        self.gate_wall_s += time.perf_counter() - t
        return record

    @property
    def first_fail_iter(self) -> int | None:
        return next((g.iter for g in self.gates if g.decision == "fail"), None)

    # -- finalisation ---------------------------------------------------------------------
    def timing(self, runner_wall_s: float | None = None) -> Timing:
        wall = runner_wall_s if runner_wall_s is not None else time.perf_counter() - self._t0
        return Timing(gate_wall_s=round(self.gate_wall_s, 6), runner_wall_s=round(wall, 6),
                      probes=len(self.metrics), checks=len(self.gates))

    def build(
        self,
        *,
        run_status: RunStatus = "success",
        runner_exit_code: int | None = None,
        runner_signal: str | None = None,
        partial: bool = False,
        runner_wall_s: float | None = None,
    ) -> tuple[Results, Summary]:
        """The results and summary of the run so far (nothing is written)."""
        ref = WindowSignatureRef(hash=self.signature_hash, path=WINDOW_SIGNATURE)
        profile = Profile(gate_preset=self.gate_preset, overrides=self.overrides)
        ended = utc_now()
        timing = self.timing(runner_wall_s)
        decisions = [g.decision for g in self.gates]
        controls_hash = self.controls.controls_hash()
        results = Results(
            run_id=self.run_id, window_signature_ref=ref, profile=profile, run_status=run_status,
            runner_exit_code=runner_exit_code, runner_signal=runner_signal,
            started_ts_utc=self.started_ts_utc, ended_ts_utc=ended, gates=list(self.gates),
            metrics=list(self.metrics), partial=partial, timing=timing,
            gate_controls_hash=controls_hash, pathology=self.pathology,
        )
        summary = Summary(
            run_id=self.run_id, window_signature_ref=ref, profile=profile, run_status=run_status,
            runner_exit_code=runner_exit_code, runner_signal=runner_signal,
            started_ts_utc=self.started_ts_utc, ended_ts_utc=ended,
            counts=count_decisions(decisions).as_dict(), final_decision=final_decision(decisions),
            first_fail_iter=self.first_fail_iter, partial=partial, timing=timing,
            gate_controls_hash=controls_hash,
        )
        return results, summary

    def close(
        self,
        *,
        run_status: RunStatus = "success",
        runner_exit_code: int | None = None,
        runner_signal: str | None = None,
        partial: bool = False,
        runner_wall_s: float | None = None,
    ) -> Summary:
        """Write results.json, results_summary.json (and first_fail_iter.txt iff a gate failed)."""
        results, summary = self.build(
            run_status=run_status, runner_exit_code=runner_exit_code, runner_signal=runner_signal,
            partial=partial, runner_wall_s=runner_wall_s,
        )
        if self.write and not self.closed:
            write_results(self.outdir, results, summary)
            seal_results(self.outdir, "session_closed", run_id=self.run_id,
                         run_outdir=self._run_outdir(),
                         controls_hash=self.controls.controls_hash(),
                         payload={"final_decision": summary.final_decision, "partial": partial,
                                  "counts": summary.counts})
        self.closed = True
        return summary

    # -- resume ---------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """JSON-ready state to resume this session in a new process."""
        from veriscope_gate.serialization import unstructure

        return {
            "run_id": self.run_id,
            "engine": self.engine.state(),
            "gates": unstructure(self.gates),
            "metrics": unstructure(self.metrics),
            "gate_wall_s": self.gate_wall_s,
            "started_ts_utc": self.started_ts_utc,
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state` (the run id must match)."""
        from veriscope_gate.serialization import structure

        if state.get("run_id") not in (None, self.run_id):
            raise ArtifactError(
                f"resume state belongs to run {state.get('run_id')!r}, not {self.run_id!r}"
            )
        self.engine.load_state(state.get("engine", {}))
        self.gates = structure(state.get("gates", []), list[GateRecord])
        self.metrics = structure(state.get("metrics", []), list[MetricRecord])
        self.gate_wall_s = float(state.get("gate_wall_s", 0.0))
        self.started_ts_utc = str(state.get("started_ts_utc", self.started_ts_utc))

    def __repr__(self) -> str:
        return f"GateSession(outdir={str(self.outdir)!r}, preset={self.gate_preset!r}, run_id={self.run_id!r})"


