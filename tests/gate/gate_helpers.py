"""Helpers shared by the Veriscope tests (synthetic metric streams and capsules)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from veriscope_gate.metrics import builtin_metrics
from veriscope_gate.session import GateSession

__all__ = ["RANGES", "make_capsule", "synthetic_values", "veriscope_cmd"]

RANGES = {m.name: m.calibration_range for m in builtin_metrics()}


def synthetic_values(rng: np.random.Generator, *, shift: float = 0.0, spread: float = 0.02) -> dict[str, float]:
    """One probe of the four built-in metrics at mid-range (plus ``shift`` of the range)."""
    return {m: lo + (hi - lo) * (0.4 + shift + spread * rng.standard_normal()) for m, (lo, hi) in RANGES.items()}


def make_capsule(
    outdir: Path, *, iters: int = 600, shift_at: int | None = None, shift: float = 0.3,
    preset: str = "cpu_smoke", seed: int = 0, partial: bool = False,
) -> Path:
    """A real capsule written by GateSession from synthetic metric streams (no training)."""
    session = GateSession(outdir, gate_preset=preset, runner={"kind": "synthetic"})
    rng = np.random.default_rng(seed)
    c = session.controls
    for it in range(1, iters + 1):
        if it % c.metric_interval == 0:
            active = shift_at is not None and it >= shift_at
            loss = 2.0 + 0.02 * rng.standard_normal()
            session.record(it, synthetic_values(rng, shift=shift if active else 0.0), loss=loss)
        if session.is_gate_step(it):
            session.evaluate(it)
    session.close(partial=partial, runner_exit_code=0)
    return outdir


def veriscope_cmd(*args: str) -> list[str]:
    """The argv of a real ``veriscope`` subprocess of this interpreter."""
    import sys

    return [sys.executable, "-m", "veriscope_gate.cli", *args]
