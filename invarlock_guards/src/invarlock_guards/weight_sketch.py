"""Random sketches of weight matrices: the baseline-relative change without keeping the baseline.

For a matrix ``W`` (``r x c``, oriented so that ``c <= r``) the sketch is ``S = W Ω`` with ``Ω`` a
``c x width`` Gaussian matrix drawn from a generator seeded by ``(seed, name)``, so baseline and
subject are projected by the same ``Ω``. By the Johnson–Lindenstrauss property
``‖S_subject − S_baseline‖_F / ‖S_baseline‖_F`` estimates the relative Frobenius change
``‖W_subject − W_baseline‖_F / ‖W_baseline‖_F`` (within roughly ``1/√width`` relative error), while
the baseline state keeps only ``width / c`` of the weights.
"""

from __future__ import annotations

import math
from typing import Any

from invarlock_core.optional_deps import require
from invarlock_guards.spectral_norm import start_seed

__all__ = ["SKETCH_WIDTH", "relative_change", "sketch_matrix"]

SKETCH_WIDTH = 16
_SALT = 7_919  # keeps sketch probes independent of the Krylov start vectors


def sketch_matrix(matrix: Any, key: str, *, seed: int, width: int = SKETCH_WIDTH) -> Any:
    """``W Ω`` as a float32 CPU tensor (``None`` for a non-finite matrix)."""
    torch = require("torch", purpose="weight sketches")
    work = matrix.detach().to(torch.float32)
    if work.shape[0] < work.shape[1]:
        work = work.T
    generator = torch.Generator().manual_seed(start_seed(seed + _SALT, key))
    probe = torch.randn(work.shape[1], width, generator=generator).to(work.device)
    return (work @ probe).cpu()


def relative_change(baseline: Any, subject: Any) -> float:
    """``‖S_subject − S_baseline‖_F / ‖S_baseline‖_F`` (``inf`` when only the subject is non-zero)."""
    torch = require("torch", purpose="weight sketches")
    if baseline.shape != subject.shape:
        return math.nan
    base = float(torch.linalg.vector_norm(baseline))
    diff = float(torch.linalg.vector_norm(subject - baseline))
    if base == 0.0:
        return 0.0 if diff == 0.0 else math.inf
    return diff / base
