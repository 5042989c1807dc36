"""Tiers, profiles and presets: everything that decides the primary-metric gates.

* A **tier** sets the acceptance limit ``L`` on the perplexity ratio and on its CI upper bound:
  ``balanced`` 1.10, ``conservative`` 1.05, ``aggressive`` 1.20.
* A **profile** (``dev``, ``ci``, ``release``; TOML under ``invarlock_core/profiles/``) sets window
  defaults, floors (windows, scored tokens, bootstrap replicates), the bootstrap and the drift band.
* A **preset** (``--preset FILE``, TOML or JSON, usually written by ``invarlock calibrate``) may set
  the tier, ``primary_metric.acceptance_range``/``drift_band`` and the guard chain and options.

Precedence: explicit arguments > preset > profile/tier defaults. The resulting :class:`Policy`
is recorded in every report and is all that ``invarlock verify`` needs to recompute a verdict.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import attrs

from invarlock_core.canonical import canonical_digest, file_sha256, prefixed
from invarlock_core.errors import ConfigError, UsageError
from invarlock_core.schema_validation import schema_errors

__all__ = [
    "PROFILES",
    "TIERS",
    "Floors",
    "Policy",
    "Preset",
    "Profile",
    "Tier",
    "build_policy",
    "load_preset",
    "load_profile",
    "policy_digest",
]


@attrs.frozen
class Tier:
    """An acceptance tier: the ratio limit and the window count it asks for."""

    name: str
    max_ratio: float
    windows: int


TIERS: dict[str, Tier] = {
    "balanced": Tier("balanced", 1.10, 180),
    "conservative": Tier("conservative", 1.05, 220),
    "aggressive": Tier("aggressive", 1.20, 140),
}
PROFILES: tuple[str, ...] = ("dev", "ci", "release")


@attrs.frozen
class Floors:
    """Minimum evidence a profile demands."""

    preview_windows: int
    final_windows: int
    tokens: int
    replicates: int


@attrs.frozen
class Profile:
    """A profile's defaults and floors."""

    name: str
    description: str
    preview_windows: int
    final_windows: int
    seq_len: int
    stride: int
    batch: int
    floors: Floors
    replicates: int
    alpha: float
    drift_band: tuple[float, float]
    tolerance: float
    tail_q95_warn: float


def _band(value: Any, where: str) -> tuple[float, float]:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise ConfigError(f"{where} must be a pair of numbers [lo, hi], got {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if not 0.0 <= lo <= hi:
        raise ConfigError(f"{where} must satisfy 0 <= lo <= hi, got [{lo}, {hi}]")
    return lo, hi


def load_profile(name: str) -> Profile:
    """Read ``profiles/<name>.toml``; unknown names list the valid ones."""
    if name not in PROFILES:
        raise UsageError(f"unknown profile {name!r}; valid: {', '.join(PROFILES)}")
    text = resources.files("invarlock_core").joinpath("profiles", f"{name}.toml").read_text("utf-8")
    data = tomllib.loads(text)
    try:
        windows, floors, boot, pm = (
            data["windows"],
            data["floors"],
            data["bootstrap"],
            data["primary_metric"],
        )
        return Profile(
            name=name,
            description=str(data.get("description", "")),
            preview_windows=int(windows["preview"]),
            final_windows=int(windows["final"]),
            seq_len=int(windows["seq_len"]),
            stride=int(windows["stride"]),
            batch=int(windows["batch"]),
            floors=Floors(
                preview_windows=int(floors["preview_windows"]),
                final_windows=int(floors["final_windows"]),
                tokens=int(floors["tokens"]),
                replicates=int(floors["replicates"]),
            ),
            replicates=int(boot["replicates"]),
            alpha=float(boot["alpha"]),
            drift_band=_band(pm["drift_band"], f"profile {name}: drift_band"),
            tolerance=float(pm["tolerance"]),
            tail_q95_warn=float(pm["tail_q95_warn"]),
        )
    except KeyError as exc:  # pragma: no cover - shipped data is tested
        raise ConfigError(f"profile {name} is missing {exc}") from exc


@attrs.frozen
class Preset:
    """A validated preset file (every section optional)."""

    path: str
    digest: str
    tier: str | None = None
    acceptance_range: tuple[float, float] | None = None
    drift_band: tuple[float, float] | None = None
    guard_order: tuple[str, ...] | None = None
    guard_options: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    provenance: Mapping[str, Any] = attrs.field(factory=dict)


def load_preset(path: str | Path) -> Preset:
    """Read a TOML (``.toml``) or JSON preset and validate its envelope."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"preset {file} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read preset {file}: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
        data: Any = tomllib.loads(text) if file.suffix == ".toml" else json.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        kind = "TOML" if file.suffix == ".toml" else "JSON"
        raise ConfigError(f"preset {file} is not valid {kind}: {exc}") from exc
    problems = schema_errors(data, "preset")
    if problems:
        raise ConfigError(f"preset {file} is invalid: {'; '.join(problems[:3])}")
    pm = data.get("primary_metric", {})
    guards = dict(data.get("guards", {}))
    order = guards.pop("order", None)
    tier = data.get("tier")
    if tier is not None and tier not in TIERS:
        raise ConfigError(f"preset {file}: unknown tier {tier!r}; valid: {', '.join(TIERS)}")
    return Preset(
        path=str(file),
        digest=prefixed(file_sha256(file)),
        tier=tier,
        acceptance_range=(
            _band(pm["acceptance_range"], f"preset {file}: primary_metric.acceptance_range")
            if "acceptance_range" in pm
            else None
        ),
        drift_band=(
            _band(pm["drift_band"], f"preset {file}: primary_metric.drift_band")
            if "drift_band" in pm
            else None
        ),
        guard_order=tuple(order) if order is not None else None,
        guard_options={str(k): dict(v) for k, v in guards.items()},
        provenance=dict(data.get("provenance", {})),
    )


@attrs.frozen
class Policy:
    """The gates of one evaluation, recorded in the report (see :func:`build_policy`)."""

    tier: str
    profile: str
    acceptance_range: tuple[float, float]
    acceptance_source: str
    """``"tier"``, ``"preset"`` or ``"explicit"``."""
    tolerance: float
    drift_band: tuple[float, float]
    drift_source: str
    tail_q95_warn: float
    replicates: int
    alpha: float
    seed: int
    floors: Floors

    def to_json(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "profile": self.profile,
            "acceptance_range": list(self.acceptance_range),
            "acceptance_source": self.acceptance_source,
            "tolerance": self.tolerance,
            "drift_band": list(self.drift_band),
            "drift_source": self.drift_source,
            "tail_q95_warn": self.tail_q95_warn,
            "bootstrap": {"replicates": self.replicates, "alpha": self.alpha, "seed": self.seed},
            "floors": attrs.asdict(self.floors),
        }


def policy_digest(policy_json: Mapping[str, Any]) -> str:
    """``sha256:`` of the canonical JSON of a recorded policy."""
    return prefixed(canonical_digest(dict(policy_json)))


def build_policy(
    *,
    tier: str | None,
    profile: Profile,
    preset: Preset | None = None,
    acceptance_range: tuple[float, float] | None = None,
    drift_band: tuple[float, float] | None = None,
    replicates: int | None = None,
    alpha: float | None = None,
    seed: int = 0,
) -> Policy:
    """Combine explicit values, the preset, the tier and the profile into one :class:`Policy`."""
    tier_name = tier or (preset.tier if preset else None) or "balanced"
    if tier_name not in TIERS:
        raise UsageError(f"unknown tier {tier_name!r}; valid: {', '.join(TIERS)}")
    if acceptance_range is not None:
        accept, accept_source = _band(acceptance_range, "acceptance range"), "explicit"
    elif preset is not None and preset.acceptance_range is not None:
        accept, accept_source = preset.acceptance_range, "preset"
    else:
        accept, accept_source = (0.0, TIERS[tier_name].max_ratio), "tier"
    if drift_band is not None:
        drift, drift_source = _band(drift_band, "drift band"), "explicit"
    elif preset is not None and preset.drift_band is not None:
        drift, drift_source = preset.drift_band, "preset"
    else:
        drift, drift_source = profile.drift_band, "profile"
    reps = profile.replicates if replicates is None else replicates
    if reps < profile.floors.replicates:
        raise UsageError(
            f"--bootstrap-replicates {reps} is below the {profile.name} profile's floor of "
            f"{profile.floors.replicates}"
        )
    level = profile.alpha if alpha is None else alpha
    if not 0.0 < level < 0.5:
        raise UsageError(f"--alpha must lie in (0, 0.5), got {level}")
    return Policy(
        tier=tier_name,
        profile=profile.name,
        acceptance_range=accept,
        acceptance_source=accept_source,
        tolerance=profile.tolerance,
        drift_band=drift,
        drift_source=drift_source,
        tail_q95_warn=profile.tail_q95_warn,
        replicates=reps,
        alpha=level,
        seed=seed,
        floors=profile.floors,
    )
