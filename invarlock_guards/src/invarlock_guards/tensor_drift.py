"""Every parameter against the same tensor of the baseline, element by element.

The spectral guard sees matrices through their spectrum, norms and sketches; this module sees
each parameter (1-D ones included: norm gains, biases, and anything else the model owns) through
four element-wise statistics against the baseline's tensor of the same name:

* **relative change** ``‖t_s − t_b‖ / ‖t_b‖``;
* **newly zeroed fraction**: elements non-zero in the baseline and exactly zero in the subject,
  over the baseline's non-zero elements;
* **sign agreement**: elements of equal sign, over those non-zero on both sides (a zeroed element
  counts as zeroed, not as a flipped sign);
* **non-finite count**: NaN/±Inf elements in the subject.

A tensor of at most ``sample_size`` elements is kept whole (every 1-D tensor of the supported
models, routers, small matrices), so its statistics are exact. A larger one is read at
``sample_size`` positions drawn from a generator seeded by ``(seed, name)``: baseline and subject
are read at the same positions, and the baseline state keeps a few KiB per tensor instead of the
weights. A parameter the core proves byte-identical to the baseline's (``ModelUnderTest.unchanged``)
is not read at all: its statistics are those of identical tensors.

Thresholds are per family (see the tiers' ``[spectral.tensors]`` table). The relative change is
gated on 1-D tensors only: a matrix's change is the spectral guard's sketch estimate, which sees
all of it.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import attrs

from invarlock_core.families import FAMILIES, classify
from invarlock_core.guarding import Violation
from invarlock_core.optional_deps import require
from invarlock_guards.settings_checks import check_families, check_range
from invarlock_guards.spectral_norm import start_seed

__all__ = [
    "TensorDriftSettings",
    "TensorSamples",
    "TensorStatistics",
    "compare_samples",
    "sample_tensors",
    "tensor_statistics",
]

_SALT = 104_729  # keeps sample positions independent of the Krylov and sketch generators


@attrs.frozen
class TensorDriftSettings:
    """Per-family thresholds of the per-tensor comparison (``[spectral.tensors]``)."""

    sample_size: int
    vector_change_fail: Mapping[str, float]
    zeroed_fail: Mapping[str, float]
    sign_agreement_min: Mapping[str, float]

    @classmethod
    def from_table(cls, table: Mapping[str, Any], *, where: str) -> TensorDriftSettings:
        check_range(table, "sample_size", 16, 1 << 24, where=where)
        for key, high in (
            ("vector_change_fail", 1e6),
            ("zeroed_fail", 1.0),
            ("sign_agreement_min", 1.0),
        ):
            check_families(table[key], FAMILIES, 0.0, high, where=f"{where}.{key}")
        return cls(
            sample_size=int(table["sample_size"]),
            vector_change_fail={f: float(table["vector_change_fail"][f]) for f in FAMILIES},
            zeroed_fail={f: float(table["zeroed_fail"][f]) for f in FAMILIES},
            sign_agreement_min={f: float(table["sign_agreement_min"][f]) for f in FAMILIES},
        )

    def as_table(self) -> dict[str, Any]:
        """The values used, as a guard result reports them."""
        return {
            "sample_size": self.sample_size,
            "vector_change_fail": dict(self.vector_change_fail),
            "zeroed_fail": dict(self.zeroed_fail),
            "sign_agreement_min": dict(self.sign_agreement_min),
        }


@attrs.frozen
class TensorSamples:
    """The parameters of one model as the comparison keeps them, packed in one tensor: each whole
    (flattened) or at its seeded positions."""

    names: tuple[str, ...]
    families: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    whole: tuple[bool, ...]
    lengths: tuple[int, ...]
    values: Any = attrs.field(repr=False)
    """float32 CPU tensor: the segments of all parameters, in ``names`` order."""

    def segments(self, names: Sequence[str]) -> Any:
        """The values of ``names``, packed in that order (baseline and subject are gathered in
        one order, whatever order their models list their parameters in)."""
        torch = require("torch", purpose="the per-tensor comparison")
        starts = dict(zip(self.names, itertools.accumulate(self.lengths, initial=0)))
        lengths = dict(zip(self.names, self.lengths))
        parts = [self.values[starts[n] : starts[n] + lengths[n]] for n in names]
        return torch.cat(parts) if parts else self.values[:0]


@attrs.frozen
class TensorStatistics:
    """One parameter of the subject against the same parameter of the baseline."""

    family: str
    vector: bool
    """A 1-D (or 0-D) tensor: its relative change is gated here."""
    whole: bool
    relative_change: float
    zeroed_fraction: float
    sign_agreement: float
    nonfinite: int


@functools.lru_cache(maxsize=4096)
def _positions(seed: int, name: str, numel: int, size: int, device: str) -> Any:
    """The sample positions of one tensor (cached: the subject reuses the baseline's)."""
    torch = require("torch", purpose="the per-tensor comparison")
    generator = torch.Generator().manual_seed(start_seed(seed + _SALT, name))
    return torch.randint(numel, (size,), generator=generator).to(device)


def sample_tensors(
    model: Any, *, seed: int, size: int, skip: Collection[str] = frozenset()
) -> TensorSamples:
    """Every parameter of ``model`` (tied ones once) but those named in ``skip``: one gather per
    large tensor, one concatenation and one transfer to the host."""
    torch = require("torch", purpose="the per-tensor comparison")
    names, shapes, whole, parts = [], [], [], []
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name in skip:
                continue
            flat = parameter.detach().reshape(-1)
            small = flat.numel() <= size
            if not small:
                flat = flat[_positions(seed, name, flat.numel(), size, str(flat.device))]
            names.append(name)
            shapes.append(tuple(int(d) for d in parameter.shape))
            whole.append(small)
            parts.append(flat)
        if len({(part.device, part.dtype) for part in parts}) > 1:
            parts = [part.float().cpu() for part in parts]
        values = torch.cat(parts).float() if parts else torch.zeros(0)
    return TensorSamples(
        names=tuple(names),
        families=tuple(classify(name) for name in names),
        shapes=tuple(shapes),
        whole=tuple(whole),
        lengths=tuple(int(part.numel()) for part in parts),
        values=values.cpu(),
    )


def tensor_statistics(
    baseline: TensorSamples, subject: TensorSamples, names: Collection[str]
) -> dict[str, TensorStatistics]:
    """The four statistics of each of ``names`` (present in both, same shapes), computed for all
    of them at once by segment sums."""
    torch = require("torch", purpose="the per-tensor comparison")
    wanted = set(names)
    index = [i for i, name in enumerate(subject.names) if name in wanted]
    if not index:
        return {}
    order = [subject.names[i] for i in index]
    b = baseline.segments(order)
    s = subject.segments(order)
    finite = torch.isfinite(s)
    clean = torch.where(finite, s, 0.0)
    live_b, live_s = b != 0, clean != 0
    both = live_b & live_s
    columns = torch.stack(
        [
            b * b,
            (clean - b).square(),
            ~finite,
            live_b,
            live_b & ~live_s & finite,
            both,
            both & ((b > 0) == (clean > 0)),
        ]
    )
    lengths = [subject.lengths[i] for i in index]
    sums = torch.stack(
        [part.sum(dim=1, dtype=torch.float64) for part in columns.split(lengths, dim=1)]
    )
    result = {}
    for i, row in zip(index, sums.tolist()):
        norm2, diff2, nonfinite, live, zeroed, shared, agree = row
        change = math.sqrt(diff2 / norm2) if norm2 > 0 else (0.0 if diff2 == 0 else math.inf)
        result[subject.names[i]] = TensorStatistics(
            family=subject.families[i],
            vector=len(subject.shapes[i]) <= 1,
            whole=subject.whole[i],
            relative_change=math.inf if nonfinite else change,
            zeroed_fraction=zeroed / live if live else 0.0,
            sign_agreement=agree / shared if shared else 1.0,
            nonfinite=int(nonfinite),
        )
    return result


def _family_summary(rows: Mapping[str, TensorStatistics]) -> dict[str, dict[str, Any]]:
    families: dict[str, dict[str, Any]] = {}
    for row in rows.values():
        entry = families.setdefault(
            row.family,
            {
                "tensors": 0,
                "max_vector_change": 0.0,
                "max_zeroed_fraction": 0.0,
                "min_sign_agreement": 1.0,
                "nonfinite": 0,
            },
        )
        entry["tensors"] += 1
        if row.vector and math.isfinite(row.relative_change):
            entry["max_vector_change"] = max(entry["max_vector_change"], row.relative_change)
        entry["max_zeroed_fraction"] = max(entry["max_zeroed_fraction"], row.zeroed_fraction)
        entry["min_sign_agreement"] = min(entry["min_sign_agreement"], row.sign_agreement)
        entry["nonfinite"] += row.nonfinite
    return dict(sorted(families.items()))


def _violations(name: str, row: TensorStatistics, settings: TensorDriftSettings) -> list[Violation]:
    found = []
    if row.nonfinite:
        found.append(
            Violation(
                name,
                f"non_finite: {row.nonfinite} NaN/Inf element(s)"
                + ("" if row.whole else " at the sampled positions"),
                value=float(row.nonfinite),
                threshold=0.0,
            )
        )
        return found
    limit = settings.vector_change_fail[row.family]
    if row.vector and row.relative_change > limit:
        found.append(
            Violation(
                name,
                f"relative_change: {row.relative_change:.4g} of the baseline tensor's norm",
                value=row.relative_change if math.isfinite(row.relative_change) else None,
                threshold=limit,
            )
        )
    limit = settings.zeroed_fail[row.family]
    if row.zeroed_fraction > limit:
        found.append(
            Violation(
                name,
                f"zeroed_fraction: {row.zeroed_fraction:.1%} of its non-zero elements became zero",
                value=row.zeroed_fraction,
                threshold=limit,
            )
        )
    limit = settings.sign_agreement_min[row.family]
    if row.sign_agreement < limit:
        found.append(
            Violation(
                name,
                f"sign_agreement: only {row.sign_agreement:.1%} of its elements keep their sign",
                value=row.sign_agreement,
                threshold=limit,
            )
        )
    return found


def compare_samples(
    baseline: TensorSamples,
    subject: TensorSamples,
    settings: TensorDriftSettings,
    *,
    unchanged: Collection[str] = frozenset(),
) -> tuple[list[Violation], dict[str, Any]]:
    """Violations and the ``tensors`` metrics of ``subject`` against ``baseline``.

    ``unchanged`` names the parameters the subject skipped as byte-identical (statistics of equal
    tensors: nothing to report). Names only on one side, or with another shape, are the invariants
    guard's to report; they are counted here and not compared.
    """
    base_shapes = dict(zip(baseline.names, baseline.shapes))
    subj_shapes = dict(zip(subject.names, subject.shapes))
    common = {n for n, shape in subj_shapes.items() if base_shapes.get(n) == shape}
    rows = tensor_statistics(baseline, subject, common)
    found = [v for name in sorted(rows) for v in _violations(name, rows[name], settings)]
    mismatched = (base_shapes.keys() - set(unchanged)) ^ subj_shapes.keys()
    metrics = {
        "compared": len(rows),
        "reused_unchanged": len(unchanged),
        "not_compared": len(mismatched) + len(subj_shapes.keys() - common - mismatched),
        "families": _family_summary(rows),
    }
    return found, metrics
