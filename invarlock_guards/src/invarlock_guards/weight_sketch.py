"""Random sketches of weight matrices: the baseline-relative change without keeping the baseline.

For a matrix ``W`` (``r x c``, oriented so that ``c <= r``) the sketch is ``S = W Ω`` with ``Ω`` a
``c x width`` Gaussian matrix drawn from a generator seeded by ``(seed, name)``, so baseline and
subject are projected by the same ``Ω``. By the Johnson–Lindenstrauss property
``‖S_subject − S_baseline‖_F / ‖S_baseline‖_F`` estimates the relative Frobenius change
``‖W_subject − W_baseline‖_F / ‖W_baseline‖_F`` (within roughly ``1/√width`` relative error), while
the baseline state keeps only ``width / c`` of the weights.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from invarlock_core.optional_deps import require
from invarlock_guards.spectral_norm import start_seed

__all__ = ["SKETCH_WIDTH", "relative_changes", "sketch_stack"]

SKETCH_WIDTH = 16
_SALT = 7_919  # keeps sketch probes independent of the Krylov start vectors


def sketch_stack(
    stack: Any, keys: Sequence[str], *, seed: int, width: int = SKETCH_WIDTH
) -> list[Any]:
    """``W Ω`` of each matrix of an oriented stack (``[batch, r, c]``, ``c <= r``, see
    :func:`~invarlock_guards.spectral_norm.matrix_stacks`), as float32 CPU tensors."""
    torch = require("torch", purpose="weight sketches")
    side = int(stack.shape[-1])
    draw = _small_probe if side * width <= _CACHED_PROBE_ELEMENTS else _probe
    probes = torch.stack([draw(seed, key, side, width) for key in keys])
    sketches = (stack @ probes.to(stack.device)).cpu()
    return list(sketches.unbind(0))


_CACHED_PROBE_ELEMENTS = 1 << 14
"""Probes up to this size (64 KiB) are cached: the subject reuses the baseline's, and drawing
them dominated the sketch of a small matrix."""


def _probe(seed: int, key: str, side: int, width: int) -> Any:
    torch = require("torch", purpose="weight sketches")
    generator = torch.Generator().manual_seed(start_seed(seed + _SALT, key))
    return torch.randn(side, width, generator=generator)


_small_probe = functools.lru_cache(maxsize=4096)(_probe)


def relative_changes(baseline: Mapping[str, Any], subject: Mapping[str, Any]) -> dict[str, float]:
    """``‖S_subject − S_baseline‖_F / ‖S_baseline‖_F`` per name present in both (``nan`` when
    the shapes differ, ``inf`` when only the subject is non-zero), computed per shape at once."""
    torch = require("torch", purpose="weight sketches")
    changes: dict[str, float] = {}
    groups: dict[tuple[tuple[int, ...], tuple[int, ...]], list[str]] = {}
    for name in sorted(baseline.keys() & subject.keys()):
        shapes = (tuple(baseline[name].shape), tuple(subject[name].shape))
        if shapes[0] != shapes[1]:
            changes[name] = math.nan
        else:
            groups.setdefault(shapes, []).append(name)
    for names in groups.values():
        base = torch.stack([baseline[name] for name in names])
        subj = torch.stack([subject[name] for name in names])
        norms = torch.stack(
            [
                torch.linalg.vector_norm(base, dim=(1, 2)),
                torch.linalg.vector_norm(subj - base, dim=(1, 2)),
            ]
        )
        for name, (norm, diff) in zip(names, zip(*norms.tolist())):
            if norm == 0.0:
                changes[name] = 0.0 if diff == 0.0 else math.inf
            else:
                changes[name] = diff / norm
    return changes
