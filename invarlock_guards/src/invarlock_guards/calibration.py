"""Preset derivation: seeded noop evaluations -> null statistics -> a calibrated preset.

``calibrate`` runs ``runs`` evaluations of the baseline against a noop subject (the ``noop`` edit
when an edits plugin provides it, else the baseline checkpoint itself), seeds
``first_seed, first_seed + 1, ...`` (each seed draws different windows and start vectors). Every
run must pass: a guard firing on a noop is a false alarm that has to be fixed before any preset
built on this model can be trusted, so calibration then stops with exit code 1 and names the guard.

From the runs it collects the *null movement* of every guarded statistic (the largest value over
runs and modules/families):

* spectral: ``|ln σ ratio|`` per family; PM: ``|ln ratio|`` and ``|ln drift|``;
* spectral, per tensor: the relative change of 1-D tensors, the newly zeroed fraction and the
  sign disagreement ``1 − sign agreement``, per family;
* rmt: growth over the baseline per family (family band and per module), and the collapse
  ``|ln shrink|`` of each collapse statistic (variance, live features, rank, ratio);
* variance: ``|ln v|`` over the FFN branches.

Each threshold of the preset is ``max(tier value, margin x null)`` (in the statistic's own units,
e.g. ``max_ratio = max(tier, exp(margin · null))``; a lower bound such as a collapse threshold or
the smallest sign agreement moves down instead, ``min(tier, exp(−margin · null))``): calibration widens a threshold where this model
on this device moves more under a noop than the tier allows for (nondeterministic kernels, low
precision), and never tightens a tier below what clean edits need. Paired statistics of a noop
on a deterministic device are exactly zero, so there the preset reproduces the tier and records
that it verified ``runs`` clean noop runs. The preset (``calibrated_preset_<model>.toml`` and
``.json``) also records the null statistics and the margin under ``provenance``.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from invarlock_core.errors import EXIT_FAIL, InvarlockError, UsageError
from invarlock_core.guarding import DEFAULT_GUARD_ORDER
from invarlock_guards.preset_files import write_preset
from invarlock_guards.rmt import COLLAPSE_FIELDS
from invarlock_guards.tiers import default_tier, load_tier

if TYPE_CHECKING:
    from invarlock_core.plugins import Registries

__all__ = [
    "CalibrationFailed",
    "CalibrationOutcome",
    "CalibrationRequest",
    "NullStatistics",
    "calibrate",
    "derive_preset",
    "null_statistics",
]


class CalibrationFailed(InvarlockError):
    """A noop calibration run failed a gate (a false alarm on this model): exit code 1."""

    exit_code = EXIT_FAIL


@attrs.frozen
class CalibrationRequest:
    """What ``invarlock calibrate`` accepts."""

    baseline: Path = attrs.field(converter=Path)
    runs: int = 5
    out: Path = attrs.field(default=Path("presets"), converter=Path)
    tier: str | None = None
    profile: str = "dev"
    margin: float = 2.0
    first_seed: int = 1
    dataset: str | None = None
    data_path: str | None = None
    seq_len: int | None = None
    preview_windows: int | None = None
    final_windows: int | None = None
    device: str = "auto"
    name: str | None = None
    keep_runs: bool = False
    guard_order: tuple[str, ...] = DEFAULT_GUARD_ORDER


@attrs.frozen
class NullStatistics:
    """The largest movement of each statistic over all noop runs (0 = none observed)."""

    runs: int
    seeds: tuple[int, ...]
    pm_log_ratio: float
    pm_log_drift: float
    spectral_log_ratio: Mapping[str, float]
    rmt_growth: Mapping[str, float]
    variance_log_ratio: float
    tensor_change: Mapping[str, float] = attrs.field(factory=dict)
    """Largest relative change of a 1-D tensor, per family."""
    tensor_zeroed: Mapping[str, float] = attrs.field(factory=dict)
    """Largest newly zeroed fraction, per family."""
    tensor_sign_flip: Mapping[str, float] = attrs.field(factory=dict)
    """Largest ``1 − sign agreement``, per family."""
    rmt_collapse: Mapping[str, float] = attrs.field(factory=dict)
    """Largest ``|ln shrink|`` of each collapse statistic (``variance``, ``live``, ...)."""


@attrs.frozen
class CalibrationOutcome:
    """The written preset and what it was derived from."""

    preset: dict[str, Any]
    toml_path: Path
    json_path: Path
    null: NullStatistics


def _abs_log(value: Any) -> float:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or value <= 0
        or not math.isfinite(value)
    ):
        return 0.0
    return abs(math.log(value))


def _guard(report: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    for entry in report.get("guards", []):
        if entry.get("name") == name:
            return dict(entry)
    return None


def _number(value: Any, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return default


def _raise(table: dict[str, float], key: str, value: float) -> None:
    table[key] = max(table.get(key, 0.0), value)


def _tensor_nulls(
    report: Mapping[str, Any],
    change: dict[str, float],
    zeroed: dict[str, float],
    flip: dict[str, float],
) -> None:
    entry = _guard(report, "spectral")
    tensors = (entry or {}).get("metrics", {}).get("tensors", {})
    for family, summary in tensors.get("families", {}).items():
        _raise(change, family, _number(summary.get("max_vector_change"), 0.0))
        _raise(zeroed, family, _number(summary.get("max_zeroed_fraction"), 0.0))
        _raise(flip, family, 1.0 - _number(summary.get("min_sign_agreement"), 1.0))


def _collapse_nulls(report: Mapping[str, Any], collapse: dict[str, float]) -> None:
    entry = _guard(report, "rmt")
    for summary in (entry or {}).get("metrics", {}).get("families", {}).values():
        for field in COLLAPSE_FIELDS:
            _raise(collapse, field, _abs_log(summary.get(f"min_{field}_ratio")))


def null_statistics(reports: Sequence[Mapping[str, Any]], seeds: Sequence[int]) -> NullStatistics:
    """The null movement observed over the noop ``reports``."""
    pm_ratio = pm_drift = variance = 0.0
    spectral: dict[str, float] = {}
    rmt: dict[str, float] = {}
    change: dict[str, float] = {}
    zeroed: dict[str, float] = {}
    flip: dict[str, float] = {}
    collapse: dict[str, float] = {}
    for report in reports:
        _tensor_nulls(report, change, zeroed, flip)
        _collapse_nulls(report, collapse)
        pm = report.get("primary_metric", {})
        pm_ratio = max(pm_ratio, _abs_log(pm.get("ratio")))
        pm_drift = max(pm_drift, _abs_log(pm.get("drift")))
        entry = _guard(report, "spectral")
        if entry is not None:
            for family, summary in entry.get("metrics", {}).get("families", {}).items():
                moved = max(
                    _abs_log(summary.get("max_sigma_ratio")),
                    _abs_log(summary.get("min_sigma_ratio")),
                )
                spectral[family] = max(spectral.get(family, 0.0), moved)
        entry = _guard(report, "rmt")
        if entry is not None:
            for family, summary in entry.get("metrics", {}).get("families", {}).items():
                band = summary.get("band_ratio")
                growth = max(0.0, band - 1.0) if isinstance(band, int | float) else 0.0
                rmt[family] = max(rmt.get(family, 0.0), growth)
            for row in entry.get("details", {}).get("top_modules", []):
                family, growth = row.get("family"), row.get("growth")
                if (
                    isinstance(family, str)
                    and isinstance(growth, int | float)
                    and math.isfinite(growth)
                ):
                    rmt[family] = max(rmt.get(family, 0.0), growth - 1.0)
        entry = _guard(report, "variance")
        if entry is not None:
            metrics = entry.get("metrics", {})
            variance = max(
                variance, _abs_log(metrics.get("min_ratio")), _abs_log(metrics.get("max_ratio"))
            )
    return NullStatistics(
        runs=len(reports),
        seeds=tuple(seeds),
        pm_log_ratio=pm_ratio,
        pm_log_drift=pm_drift,
        spectral_log_ratio=dict(sorted(spectral.items())),
        rmt_growth=dict(sorted(rmt.items())),
        variance_log_ratio=variance,
        tensor_change=dict(sorted(change.items())),
        tensor_zeroed=dict(sorted(zeroed.items())),
        tensor_sign_flip=dict(sorted(flip.items())),
        rmt_collapse=dict(sorted(collapse.items())),
    )


def _widen(tier_value: float, derived: float) -> float:
    return float(max(tier_value, derived))


def _tensor_thresholds(
    tensors: Mapping[str, Any], null: NullStatistics, margin: float
) -> dict[str, Any]:
    def grown(key: str, moved: Mapping[str, float], cap: float) -> dict[str, float]:
        return {
            family: min(cap, _widen(limit, margin * moved.get(family, 0.0)))
            for family, limit in tensors[key].items()
        }

    return {
        "vector_change_fail": grown("vector_change_fail", null.tensor_change, math.inf),
        "zeroed_fail": grown("zeroed_fail", null.tensor_zeroed, 1.0),
        "sign_agreement_min": {
            family: float(max(0.0, min(low, 1.0 - margin * null.tensor_sign_flip.get(family, 0.0))))
            for family, low in tensors["sign_agreement_min"].items()
        },
    }


def _collapse_thresholds(
    collapse: Mapping[str, Any], null: NullStatistics, margin: float
) -> dict[str, float]:
    return {
        f"{field}_fail": float(
            min(collapse[f"{field}_fail"], math.exp(-margin * null.rmt_collapse.get(field, 0.0)))
        )
        for field in COLLAPSE_FIELDS
    }


def derive_preset(
    null: NullStatistics,
    *,
    tier: str,
    margin: float,
    drift_band: tuple[float, float],
    guard_order: Sequence[str],
    provenance: Mapping[str, Any],
) -> dict[str, Any]:
    """The preset: the tier's thresholds, each widened to ``margin x`` its null movement."""
    table = load_tier(tier)
    spectral, rmt, variance = table["spectral"], table["rmt"], table["variance"]
    spectral_out = {
        "max_ratio": {
            family: _widen(limit, math.exp(margin * null.spectral_log_ratio.get(family, 0.0)))
            for family, limit in spectral["max_ratio"].items()
        },
        "noise_scale": {
            family: _widen(scale, margin * null.spectral_log_ratio.get(family, 0.0))
            for family, scale in spectral["noise_scale"].items()
        },
        "tensors": _tensor_thresholds(spectral["tensors"], null, margin),
    }
    rmt_out = {
        "epsilon": {
            family: _widen(eps, margin * null.rmt_growth.get(family, 0.0))
            for family, eps in rmt["epsilon"].items()
        },
        "collapse": _collapse_thresholds(rmt["collapse"], null, margin),
    }
    spread = margin * null.variance_log_ratio
    variance_out = {
        "min_ratio": float(min(variance["min_ratio"], math.exp(-spread))),
        "max_ratio": _widen(variance["max_ratio"], math.exp(spread)),
    }
    drift = margin * null.pm_log_drift
    band = [float(min(drift_band[0], math.exp(-drift))), _widen(drift_band[1], math.exp(drift))]
    return {
        "schema_version": 1,
        "tier": tier,
        "primary_metric": {"drift_band": band},
        "guards": {
            "order": list(guard_order),
            "spectral": spectral_out,
            "rmt": rmt_out,
            "variance": variance_out,
        },
        "provenance": {
            **provenance,
            "margin": margin,
            "rule": "threshold = max(tier value, margin x largest noop movement)",
            "null": attrs.asdict(
                null,
                value_serializer=lambda _i, _a, v: list(v) if isinstance(v, tuple) else v,
            ),
        },
    }


def _check(request: CalibrationRequest) -> str:
    if request.runs < 1:
        raise UsageError(f"--runs must be at least 1, got {request.runs}")
    if not (math.isfinite(request.margin) and request.margin >= 1.0):
        raise UsageError(f"--margin must be a number >= 1, got {request.margin}")
    tier = request.tier or default_tier()
    load_tier(tier)
    if not request.baseline.is_dir():
        raise UsageError(f"--baseline {request.baseline} is not a directory")
    return tier


def _first_failure(report: Mapping[str, Any]) -> str:
    for entry in report.get("guards", []):
        if not entry.get("passed", True):
            violations = entry.get("violations") or [{}]
            first = violations[0]
            return f"guard {entry.get('name')}: {first.get('target', '?')}: {first.get('message', 'failed')}"
    reasons = report.get("reasons") or ["verdict FAIL"]
    return str(reasons[0])


def calibrate(
    request: CalibrationRequest, *, registries: Registries | None = None
) -> CalibrationOutcome:
    """Run the noop evaluations and write ``calibrated_preset_<model>.toml`` and ``.json``."""
    tier = _check(request)
    from invarlock_core.evaluation import EvaluationRequest, evaluate
    from invarlock_core.evaluation.policy import load_profile

    if registries is None:
        from invarlock_core.plugins import get_registries

        registries = get_registries()
    noop_edit = "noop" if "noop" in registries.edits else None
    name = request.name or request.baseline.resolve().name
    seeds = tuple(range(request.first_seed, request.first_seed + request.runs))
    request.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".calibration-", dir=request.out))
    reports: list[dict[str, Any]] = []
    try:
        for seed in seeds:
            outcome = evaluate(
                EvaluationRequest(
                    baseline=request.baseline,
                    out=work / f"run_{seed}",
                    subject=None if noop_edit else request.baseline,
                    edit=noop_edit,
                    dataset=request.dataset,
                    data_path=request.data_path,
                    seq_len=request.seq_len,
                    preview_windows=request.preview_windows,
                    final_windows=request.final_windows,
                    tier=tier,
                    profile=request.profile,
                    device=request.device,
                    guards=tuple(request.guard_order),
                    seed=seed,
                ),
                registries=registries,
            )
            if outcome.exit_code != 0:
                raise CalibrationFailed(
                    f"noop calibration run with seed {seed} failed ({_first_failure(outcome.report)}); "
                    "the guards raise false alarms on this baseline: no preset written"
                )
            reports.append(outcome.report)
        null = null_statistics(reports, seeds)
        first = reports[0]
        preset = derive_preset(
            null,
            tier=tier,
            margin=request.margin,
            drift_band=load_profile(request.profile).drift_band,
            guard_order=request.guard_order,
            provenance={
                "kind": "calibrated_preset",
                "model": name,
                "baseline_digest": first.get("baseline", {}).get("digest"),
                "profile": request.profile,
                "noop": noop_edit or "subject = baseline checkpoint",
                "environment": first.get("environment", {}),
            },
        )
        toml_path, json_path = write_preset(request.out, f"calibrated_preset_{name}", preset)
        if request.keep_runs:
            target = request.out / "calibration" / name
            shutil.rmtree(target, ignore_errors=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            work.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return CalibrationOutcome(preset=preset, toml_path=toml_path, json_path=json_path, null=null)
