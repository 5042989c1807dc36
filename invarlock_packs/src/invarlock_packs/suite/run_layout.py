"""Where everything of a suite run lives under its output directory (seeds 001/003, R-01..R-09).

::

    OUT/
      state/      suite_config.json, scenarios.json, models.json, tuned_edit_params.json,
                  model_revisions.json, disk_pressure.json, progress.json, queue.sqlite3
      logs/       gpu_<device>.log, tasks/<task id>.log
      workers/    worker heartbeats and the SHUTDOWN flag
      presets/    calibrated_preset_<slug>.{toml,json} (run-scoped)
      keys/       signing key generated for this run (mode 0600) when none was given
      reports/    final_verdict.{txt,json} and the verdict sidecars
      analysis/   evaluation_optimization_summary.json, determinism_repeats.json (--repeats)
      <slug>/models/baseline, <slug>/models/<scenario>, <slug>/models/error_<scenario>
      <slug>/reports/baseline, calibration/run_<n>, <scenario>/run_<n>, errors/<scenario>
      <slug>/repeats/<scenario>/repeat_<k>   (--repeats N: not part of the verdict)
      evidence_pack/   the signed pack (unless --no-pack)
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import attrs

__all__ = ["RUN_MARKER", "RunLayout"]

RUN_MARKER: Final = Path("state") / "suite_config.json"
"""The file that makes a directory a suite run (``--out`` must be empty, new, or a run)."""


@attrs.frozen
class RunLayout:
    """Paths of one run directory."""

    root: Path

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def config(self) -> Path:
        return self.root / RUN_MARKER

    @property
    def scenarios(self) -> Path:
        return self.state / "scenarios.json"

    @property
    def models(self) -> Path:
        return self.state / "models.json"

    @property
    def tuned_params(self) -> Path:
        return self.state / "tuned_edit_params.json"

    @property
    def revisions(self) -> Path:
        return self.state / "model_revisions.json"

    @property
    def disk_pressure(self) -> Path:
        return self.state / "disk_pressure.json"

    @property
    def presets(self) -> Path:
        return self.root / "presets"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def analysis(self) -> Path:
        return self.root / "analysis"

    @property
    def default_pack(self) -> Path:
        return self.root / "evidence_pack"

    def preset(self, slug: str) -> Path:
        return self.presets / f"calibrated_preset_{slug}.toml"

    def baseline_model(self, slug: str) -> Path:
        return self.root / slug / "models" / "baseline"

    def model_profile(self, slug: str) -> Path:
        return self.root / slug / "model_profile.json"

    def subject_model(self, slug: str, scenario: str, *, error: bool) -> Path:
        return self.root / slug / "models" / (f"error_{scenario}" if error else scenario)

    def baseline_report_dir(self, slug: str) -> Path:
        return self.root / slug / "reports" / "baseline"

    def calibration_dir(self, slug: str, run: int) -> Path:
        return self.root / slug / "reports" / "calibration" / f"run_{run}"

    def repeat_dir(self, slug: str, scenario: str, repeat: int) -> Path:
        return self.root / slug / "repeats" / scenario / f"repeat_{repeat}"

    def report_dir(self, slug: str, scenario: str, run: int, *, error: bool) -> Path:
        if error:
            return self.root / slug / "reports" / "errors" / scenario
        return self.root / slug / "reports" / scenario / f"run_{run}"
