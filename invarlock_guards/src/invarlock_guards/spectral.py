"""The spectral guard: every weight matrix against the same matrix of the baseline.

For each matrix ``W`` (2-D weights and each expert of fused expert tensors) the guard measures
``σ_max`` (block Krylov, on the model's device), the Frobenius norm, the stable rank
``‖W‖²_F / σ²_max`` and the all-zero rows and columns, in the baseline once and in the subject.
Per module, with ``ρ = σ_subject / σ_baseline`` and ``d = |ln ρ|``:

* **fatal movement**: ``d > ln(max_ratio[family])`` fails (a 20x scaled FFN matrix: ``d = 3.0``);
* **caps**: ``z = d / noise_scale[family]`` gives a two-sided normal p-value; the
  Benjamini–Hochberg procedure at ``fdr_alpha`` over all modules picks the *capped* modules.
  ``caps_applied`` counts them; the guard fails when ``caps_applied > max_caps``;
* **degeneracy**: stable-rank ratio (rank collapse, e.g. a rank-4 truncation), Frobenius-norm
  ratio (norm collapse, zeroed matrices) and newly all-zero rows/columns, each vs the baseline.

Because every statistic is a ratio to the same module of the baseline, one damaged module is
visible however few modules a family has (a z-score across the modules of a family is bounded by
``sqrt(n - 1)``, which is why this guard does not use one).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from invarlock_core.guarding import (
    GuardContext,
    GuardResult,
    ModelUnderTest,
    Severity,
    Violation,
)
from invarlock_core.optional_deps import require
from invarlock_guards.multiple_testing import benjamini_hochberg
from invarlock_guards.results import guard_result
from invarlock_guards.settings_checks import check_families, check_range
from invarlock_guards.spectral_norm import (
    KrylovSettings,
    exact_gram,
    exact_top_eigenvalues,
    matrix_stacks,
    stack_singular_values,
)
from invarlock_guards.tensor_drift import (
    TensorDriftSettings,
    TensorSamples,
    compare_samples,
    sample_tensors,
)
from invarlock_guards.tiers import guard_settings
from invarlock_guards.weight_matrices import WeightMatrix, weight_matrices
from invarlock_guards.weight_sketch import relative_changes, sketch_stack

__all__ = [
    "MatrixSpectrum",
    "SpectralGuard",
    "SpectralSettings",
    "compare_spectra",
    "measure_matrices",
    "measure_spectra",
]

_MATRIX_FAMILIES = ("ffn", "attn", "embed", "router", "expert_ffn", "other")
_TOP_MODULES = 10


@attrs.frozen
class SpectralSettings:
    """The spectral guard's thresholds (a tier's ``[spectral]`` table merged with a preset's)."""

    max_caps: int
    fdr_alpha: float
    krylov: KrylovSettings
    noise_scale: Mapping[str, float]
    max_ratio: Mapping[str, float]
    stable_rank_warn: float
    stable_rank_fail: float
    norm_warn: float
    norm_fail: float
    zeroed_fail: float
    change_warn: float
    change_fail: float
    tensors: TensorDriftSettings

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> SpectralSettings:
        where = "guards.spectral"
        degeneracy = table["degeneracy"]
        check_range(table, "max_caps", 0, 1_000_000, where=where)
        check_range(table, "fdr_alpha", 1e-9, 0.5, where=where)
        check_range(table, "tolerance", 1e-9, 0.1, where=where)
        check_range(table, "max_iterations", 1, 10_000, where=where)
        check_range(table, "block_size", 1, 256, where=where)
        check_families(
            table["noise_scale"], _MATRIX_FAMILIES, 1e-6, 10.0, where=f"{where}.noise_scale"
        )
        check_families(
            table["max_ratio"], _MATRIX_FAMILIES, 1.0 + 1e-9, 1e6, where=f"{where}.max_ratio"
        )
        check_range(degeneracy, "change_warn", 0.0, 1e6, where=f"{where}.degeneracy")
        check_range(degeneracy, "change_fail", 0.0, 1e6, where=f"{where}.degeneracy")
        for key in (
            "stable_rank_warn",
            "stable_rank_fail",
            "norm_warn",
            "norm_fail",
            "zeroed_fail",
        ):
            check_range(degeneracy, key, 0.0, 1.0, where=f"{where}.degeneracy")
        return cls(
            max_caps=int(table["max_caps"]),
            fdr_alpha=float(table["fdr_alpha"]),
            krylov=KrylovSettings(
                tolerance=float(table["tolerance"]),
                max_iterations=int(table["max_iterations"]),
                block_size=int(table["block_size"]),
            ),
            noise_scale={k: float(v) for k, v in table["noise_scale"].items()},
            max_ratio={k: float(v) for k, v in table["max_ratio"].items()},
            stable_rank_warn=float(degeneracy["stable_rank_warn"]),
            stable_rank_fail=float(degeneracy["stable_rank_fail"]),
            norm_warn=float(degeneracy["norm_warn"]),
            norm_fail=float(degeneracy["norm_fail"]),
            zeroed_fail=float(degeneracy["zeroed_fail"]),
            change_warn=float(degeneracy["change_warn"]),
            change_fail=float(degeneracy["change_fail"]),
            tensors=TensorDriftSettings.from_table(table["tensors"], where=f"{where}.tensors"),
        )


@attrs.frozen
class MatrixSpectrum:
    """What the spectral guard measures of one matrix."""

    family: str
    shape: tuple[int, int]
    sigma: float
    frobenius: float
    zero_rows: int
    zero_cols: int
    finite: bool

    @property
    def stable_rank(self) -> float:
        """``‖W‖²_F / σ²_max`` (``nan`` for a zero or non-finite matrix)."""
        if not self.finite or self.sigma <= 0.0:
            return math.nan
        return (self.frobenius / self.sigma) ** 2


def measure_spectra(
    model: Any, *, seed: int, krylov: KrylovSettings
) -> tuple[dict[str, MatrixSpectrum], dict[str, Any]]:
    """The spectrum summary and the sketch of every weight matrix of ``model``, keyed by name."""
    return measure_matrices(weight_matrices(model), seed=seed, krylov=krylov)


def measure_matrices(
    matrices: Sequence[WeightMatrix], *, seed: int, krylov: KrylovSettings
) -> tuple[dict[str, MatrixSpectrum], dict[str, Any]]:
    """The spectrum summary and the sketch of each matrix, keyed by name.

    Matrices of one shape are measured together: one stack, one Krylov run, and one transfer of
    all their statistics to the host. Matrices solved directly keep only their Gram matrix until
    all stacks are measured, then every size is solved in one call
    (:func:`~invarlock_guards.spectral_norm.exact_top_eigenvalues`).
    """
    return _measure(matrices, seed=seed, krylov=krylov).result()


class _Measurement:
    """Measured matrices whose directly solved Grams may still wait, so that a baseline's and a
    subject's are solved in one call (:meth:`solve`)."""

    def __init__(
        self,
        measured: list[tuple[_Measured, list[float] | None]],
        grams: list[Any],
        tolerance: float,
    ) -> None:
        self._measured = measured
        self._grams = grams
        self._tolerance = tolerance
        self._done: tuple[dict[str, MatrixSpectrum], dict[str, Any]] | None = None
        self.names = frozenset(name for item, _s in measured for name in item.names)

    def solve(self, *others: _Measurement) -> None:
        """Solve this measurement's waiting Grams, and those of ``others``, in one call."""
        group = [m for m in {id(m): m for m in (self, *others)}.values() if m._done is None]
        if not group:
            return
        torch = require("torch", purpose="the spectral guard")
        with torch.no_grad():
            # The tolerance is stated on σ; λ = σ² may move twice as much.
            solved = iter(
                exact_top_eigenvalues(
                    [gram for m in group for gram in m._grams],
                    tolerance=2.0 * min(m._tolerance for m in group),
                )
            )
        for measurement in group:
            spectra: dict[str, MatrixSpectrum] = {}
            sketches: dict[str, Any] = {}
            for item, sigmas in measurement._measured:
                if sigmas is None:  # solved directly, just now
                    sigmas = next(solved).sqrt().tolist()
                item.record(sigmas, spectra, sketches)
            measurement._done = (dict(sorted(spectra.items())), sketches)
            measurement._grams = []

    def result(self) -> tuple[dict[str, MatrixSpectrum], dict[str, Any]]:
        """The spectra and the sketches, keyed by name (solving first if needed)."""
        self.solve()
        assert self._done is not None
        return self._done


def _measure(
    matrices: Sequence[WeightMatrix], *, seed: int, krylov: KrylovSettings
) -> _Measurement:
    torch = require("torch", purpose="the spectral guard")
    measured: list[tuple[_Measured, list[float] | None]] = []
    exact: list[Any] = []  # Grams solved together later: one call per size
    with torch.no_grad():
        for chunk in matrix_stacks([m.tensor for m in matrices], [m.name for m in matrices]):
            names = [matrices[i].name for i in chunk.indices]
            stack = chunk.stack
            magnitude = stack.abs()  # (amax is a much faster reduction than any() on a mask)
            columns = [
                torch.linalg.vector_norm(stack, dim=(1, 2)),
                (magnitude.amax(dim=2) > 0).sum(dim=1, dtype=torch.float32),  # non-zero rows
                (magnitude.amax(dim=1) > 0).sum(dim=1, dtype=torch.float32),  # and columns
            ]
            gram = exact_gram(stack, krylov)
            if gram is None:
                sigma = stack_singular_values(stack, names, seed=seed, settings=krylov)
                columns.append(sigma.float())
            else:
                exact.append(gram)
            statistics = torch.stack(columns, dim=1).tolist()  # one transfer per stack
            sigmas = [row.pop() for row in statistics] if gram is None else None
            measurement = _Measured(
                names=names,
                families=[matrices[i].family for i in chunk.indices],
                oriented=(int(stack.shape[1]), int(stack.shape[2])),
                finite=chunk.finite,
                transposed=chunk.transposed,
                statistics=statistics,
                sketches=sketch_stack(stack, names, seed=seed),
            )
            measured.append((measurement, sigmas))
    return _Measurement(measured, exact, krylov.tolerance)


@attrs.frozen
class _Measured:
    """One measured stack, without the stack itself or any reference to the model's tensors
    (only its small results are kept: a baseline state must not keep the baseline alive)."""

    names: list[str]
    families: list[str]
    oriented: tuple[int, int]
    finite: tuple[bool, ...]
    transposed: tuple[bool, ...]
    statistics: list[list[float]]
    """Per matrix: Frobenius norm, non-zero rows and non-zero columns (oriented)."""
    sketches: list[Any]

    def record(
        self, sigmas: list[float], spectra: dict[str, MatrixSpectrum], sketches: dict[str, Any]
    ) -> None:
        """Add the spectra (and the sketches of the finite matrices) to the caller's maps."""
        long, short = self.oriented
        rows = zip(
            self.names,
            self.families,
            self.sketches,
            sigmas,
            self.statistics,
            self.finite,
            self.transposed,
        )
        for name, family, sketch, sigma, stats, finite, flip in rows:
            frobenius, live_long, live_short = stats
            if finite:
                sketches[name] = sketch
            zero_long, zero_short = long - live_long, short - live_short
            zero_rows, zero_cols = (zero_short, zero_long) if flip else (zero_long, zero_short)
            spectra[name] = MatrixSpectrum(
                family=family,
                shape=(short, long) if flip else (long, short),
                sigma=sigma if finite else math.nan,
                frobenius=frobenius if finite else math.nan,
                zero_rows=int(zero_rows) if finite else 0,
                zero_cols=int(zero_cols) if finite else 0,
                finite=finite,
            )


def _ratio(subject: float, baseline: float) -> float:
    if baseline > 0.0:
        return subject / baseline
    return 1.0 if subject == 0.0 else math.inf


def _fmt(value: float) -> str:
    return f"{value:.4g}"


@attrs.define
class _Comparison:
    violations: list[Violation] = attrs.field(factory=list)
    rows: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    pvalues: dict[str, float] = attrs.field(factory=dict)


def _compare_one(
    name: str,
    base: MatrixSpectrum,
    subj: MatrixSpectrum,
    settings: SpectralSettings,
    out: _Comparison,
    change: float,
) -> None:
    if not subj.finite:
        out.violations.append(Violation(name, "non-finite values in the subject's weights"))
        return
    if subj.shape != base.shape:
        out.violations.append(
            Violation(
                name, f"shape {list(subj.shape)} differs from the baseline's {list(base.shape)}"
            )
        )
        return
    if not base.finite:
        out.violations.append(
            Violation(name, "the baseline's weights are non-finite; not compared", severity="warn")
        )
        return
    family = subj.family
    ratio = _ratio(subj.sigma, base.sigma)
    log_ratio = math.log(ratio) if 0.0 < ratio < math.inf else math.copysign(math.inf, ratio - 1.0)
    limit = settings.max_ratio[family]
    sr_ratio = _ratio(subj.stable_rank, base.stable_rank) if subj.sigma > 0 else math.nan
    norm_ratio = _ratio(subj.frobenius, base.frobenius)
    rows, cols = subj.shape
    new_zero = max(0, subj.zero_rows - base.zero_rows) + max(0, subj.zero_cols - base.zero_cols)
    zeroed = new_zero / (rows + cols)
    z = abs(log_ratio) / settings.noise_scale[family]
    out.rows[name] = {
        "family": family,
        "sigma_baseline": base.sigma,
        "sigma_subject": subj.sigma,
        "sigma_ratio": ratio,
        "z": z,
        "stable_rank_ratio": sr_ratio,
        "norm_ratio": norm_ratio,
        "zeroed_fraction": zeroed,
        "relative_change": change,
    }
    out.pvalues[name] = math.erfc(z / math.sqrt(2.0)) if math.isfinite(z) else 0.0
    if abs(log_ratio) > math.log(limit):
        out.violations.append(
            Violation(
                name,
                f"σ_max x{_fmt(ratio)} vs the baseline (allowed x{_fmt(1 / limit)}..x{_fmt(limit)})",
                value=ratio if math.isfinite(ratio) else None,
                threshold=limit,
            )
        )
    for value, warn, fail, what in (
        (
            sr_ratio,
            settings.stable_rank_warn,
            settings.stable_rank_fail,
            "stable rank (rank collapse)",
        ),
        (norm_ratio, settings.norm_warn, settings.norm_fail, "Frobenius norm (norm collapse)"),
    ):
        if math.isfinite(value) and value < warn:
            severity: Severity = "fail" if value < fail else "warn"
            out.violations.append(
                Violation(
                    name,
                    f"{what} x{_fmt(value)} of the baseline's",
                    value=value,
                    threshold=fail if severity == "fail" else warn,
                    severity=severity,
                )
            )
    if change > settings.change_warn:
        change_severity: Severity = "fail" if change > settings.change_fail else "warn"
        out.violations.append(
            Violation(
                name,
                f"weights changed by {_fmt(change)} of their norm (relative Frobenius change)",
                value=change if math.isfinite(change) else None,
                threshold=settings.change_fail
                if change_severity == "fail"
                else settings.change_warn,
                severity=change_severity,
            )
        )
    if zeroed > settings.zeroed_fail:
        out.violations.append(
            Violation(
                name,
                f"{new_zero} rows/columns became all-zero ({zeroed:.1%})",
                value=zeroed,
                threshold=settings.zeroed_fail,
            )
        )


def _summaries(rows: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    families: dict[str, dict[str, Any]] = {}
    for row in rows.values():
        entry = families.setdefault(
            row["family"],
            {
                "modules": 0,
                "max_sigma_ratio": 0.0,
                "min_sigma_ratio": math.inf,
                "min_stable_rank_ratio": math.inf,
                "min_norm_ratio": math.inf,
                "max_relative_change": 0.0,
            },
        )
        entry["modules"] += 1
        entry["max_sigma_ratio"] = max(entry["max_sigma_ratio"], row["sigma_ratio"])
        entry["min_sigma_ratio"] = min(entry["min_sigma_ratio"], row["sigma_ratio"])
        if math.isfinite(row["stable_rank_ratio"]):
            entry["min_stable_rank_ratio"] = min(
                entry["min_stable_rank_ratio"], row["stable_rank_ratio"]
            )
        entry["min_norm_ratio"] = min(entry["min_norm_ratio"], row["norm_ratio"])
        if not math.isnan(row["relative_change"]):
            entry["max_relative_change"] = max(entry["max_relative_change"], row["relative_change"])
    return {
        family: {k: _finite_or_none(v) for k, v in entry.items()}
        for family, entry in sorted(families.items())
    }


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def compare_spectra(
    baseline: Mapping[str, MatrixSpectrum],
    subject: Mapping[str, MatrixSpectrum],
    settings: SpectralSettings,
    changes: Mapping[str, float] | None = None,
) -> tuple[list[Violation], dict[str, Any], dict[str, Any]]:
    """Violations, metrics and details of ``subject`` against ``baseline`` (order-independent).

    ``changes`` holds the relative Frobenius change of each module (from weight sketches); a
    module without one is treated as unchanged in that respect.
    """
    out = _Comparison()
    for name in sorted(baseline.keys() & subject.keys()):
        change = (changes or {}).get(name, 0.0)
        _compare_one(name, baseline[name], subject[name], settings, out, change)
    unmatched = sorted(baseline.keys() ^ subject.keys())
    for name in unmatched[:10]:
        where = "baseline" if name in baseline else "subject"
        out.violations.append(
            Violation(name, f"matrix only in the {where}; not compared", severity="warn")
        )
    capped = benjamini_hochberg(out.pvalues, settings.fdr_alpha)
    for name in capped:
        row = out.rows[name]
        out.violations.append(
            Violation(
                name,
                f"capped: σ_max x{_fmt(row['sigma_ratio'])} (z {_fmt(row['z'])}) is significant "
                f"at FDR {settings.fdr_alpha}",
                value=row["sigma_ratio"],
                severity="warn",
            )
        )
    caps_exceeded = len(capped) > settings.max_caps
    if caps_exceeded:
        out.violations.append(
            Violation(
                "spectral.caps",
                f"{len(capped)} modules capped, more than max_caps {settings.max_caps}",
                value=float(len(capped)),
                threshold=float(settings.max_caps),
            )
        )
    movers = sorted(
        out.rows.items(),
        key=lambda item: (
            -abs(
                math.log(max(item[1]["sigma_ratio"], 1e-300))
                if math.isfinite(item[1]["sigma_ratio"])
                else -math.inf
            ),
            item[0],
        ),
    )
    worst = movers[0] if movers else None
    metrics: dict[str, Any] = {
        "modules": len(out.rows),
        "unmatched": len(unmatched),
        "caps_applied": len(capped),
        "max_caps": settings.max_caps,
        "caps_exceeded": caps_exceeded,
        "worst_module": worst[0] if worst else None,
        "worst_sigma_ratio": _finite_or_none(worst[1]["sigma_ratio"]) if worst else None,
        "families": _summaries(out.rows),
    }
    details = {
        "capped_modules": capped,
        "top_modules": [
            {"module": name, **{k: _finite_or_none(v) for k, v in row.items()}}
            for name, row in movers[:_TOP_MODULES]
        ],
    }
    return out.violations, metrics, details


def _thresholds(settings: SpectralSettings) -> dict[str, Any]:
    return {
        "max_caps": settings.max_caps,
        "fdr_alpha": settings.fdr_alpha,
        "noise_scale": dict(settings.noise_scale),
        "max_ratio": dict(settings.max_ratio),
        "degeneracy": {
            "stable_rank_warn": settings.stable_rank_warn,
            "stable_rank_fail": settings.stable_rank_fail,
            "norm_warn": settings.norm_warn,
            "norm_fail": settings.norm_fail,
            "zeroed_fail": settings.zeroed_fail,
            "change_warn": settings.change_warn,
            "change_fail": settings.change_fail,
        },
        "krylov": attrs.asdict(settings.krylov),
        "tensors": settings.tensors.as_table(),
    }


@attrs.frozen
class _SpectralState:
    settings: SpectralSettings
    measurement: _Measurement
    """The baseline's matrices; their direct solves wait for the first subject's (one call)."""
    samples: TensorSamples
    """Every parameter of the baseline, whole or at its seeded positions."""

    @property
    def spectra(self) -> Mapping[str, MatrixSpectrum]:
        return self.measurement.result()[0]

    @property
    def sketches(self) -> Mapping[str, Any]:
        return self.measurement.result()[1]


def _compare_tensors(
    subject: ModelUnderTest, baseline_state: _SpectralState, seed: int
) -> tuple[list[Violation], dict[str, Any]]:
    """Every parameter vs the baseline's, element-wise; byte-identical ones are not read."""
    settings = baseline_state.settings.tensors
    unchanged = subject.unchanged & set(baseline_state.samples.names)
    samples = sample_tensors(subject.model, seed=seed, size=settings.sample_size, skip=unchanged)
    return compare_samples(baseline_state.samples, samples, settings, unchanged=unchanged)


class SpectralGuard:
    """σ_max, stable rank and norms of every weight matrix vs the same matrix of the baseline."""

    name = "spectral"
    summary = "per-module σ_max, stable rank and norm vs the baseline (caps, degeneracy)"

    def prepare(self, baseline: ModelUnderTest, context: GuardContext) -> _SpectralState:
        settings = SpectralSettings.from_table(
            guard_settings(self.name, context.tier, context.options)
        )
        matrices = weight_matrices(baseline.model)
        return _SpectralState(
            settings,
            _measure(matrices, seed=context.seed, krylov=settings.krylov),
            sample_tensors(baseline.model, seed=context.seed, size=settings.tensors.sample_size),
        )

    def validate(
        self, subject: ModelUnderTest, baseline_state: _SpectralState, context: GuardContext
    ) -> GuardResult:
        settings = baseline_state.settings
        # A matrix of a parameter bit-identical to the baseline's (``subject.unchanged``) has the
        # baseline's spectrum: it is taken from the baseline state, not measured again, and its
        # relative change is 0 (no sketch: compare_spectra's default for a module without one).
        reused, measured = [], []
        baseline_names = baseline_state.measurement.names
        for matrix in weight_matrices(subject.model):
            if matrix.parameter in subject.unchanged and matrix.name in baseline_names:
                reused.append(matrix.name)
            else:
                measured.append(matrix)
        measurement = _measure(measured, seed=context.seed, krylov=settings.krylov)
        measurement.solve(baseline_state.measurement)  # both sides' direct solves in one call
        spectra, sketches = measurement.result()
        for name in reused:
            spectra[name] = baseline_state.spectra[name]
        changes = relative_changes(baseline_state.sketches, sketches)
        violations, metrics, details = compare_spectra(
            baseline_state.spectra, spectra, settings, changes
        )
        metrics["reused_unchanged"] = len(reused)
        drift, metrics["tensors"] = _compare_tensors(subject, baseline_state, context.seed)
        violations.extend(drift)
        return guard_result(
            self.name,
            violations,
            metrics=metrics,
            thresholds=_thresholds(settings),
            details=details,
        )
