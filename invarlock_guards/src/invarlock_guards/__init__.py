"""InvarLock baseline-relative guards (invariants, spectral, RMT, variance).

Every guard compares each module of the subject with the same module of the baseline; the four
guards are registered through the ``invarlock`` entry-point group by :mod:`invarlock_guards.plugin`
and read their thresholds from the tiers shipped in ``invarlock_guards/tiers/``. Importing this
package does not import torch.
"""

from __future__ import annotations

from invarlock_guards.calibration import CalibrationRequest, calibrate
from invarlock_guards.invariants import InvariantsGuard
from invarlock_guards.rmt import RMTGuard
from invarlock_guards.spectral import SpectralGuard
from invarlock_guards.spectral_norm import top_singular_values
from invarlock_guards.tiers import TIERS, guard_settings, load_tier
from invarlock_guards.variance import VarianceGuard

__version__ = "0.1.0"

__all__ = [
    "TIERS",
    "CalibrationRequest",
    "InvariantsGuard",
    "RMTGuard",
    "SpectralGuard",
    "VarianceGuard",
    "__version__",
    "calibrate",
    "guard_settings",
    "load_tier",
    "top_singular_values",
]
