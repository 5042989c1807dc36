"""Gate controls, presets (shipped as data) and the canonical ``gate_controls_hash``."""

from __future__ import annotations

import functools
import math
import tomllib
import types
from collections.abc import Mapping
from importlib import resources
from typing import Any, Literal, Union, cast, get_args, get_origin

import attrs

from invarlock_core.canonical import canonical_digest, prefixed
from veriscope_gate.errors import PresetError

__all__ = [
    "POLICIES",
    "GateControls",
    "Policy",
    "load_preset",
    "preset_descriptions",
    "preset_names",
]

Policy = Literal["either", "conjunction", "persistence", "persistence_stability"]
POLICIES: tuple[str, ...] = ("either", "conjunction", "persistence", "persistence_stability")

_HASH_REQUIRED = (
    "gate_window",
    "gate_warmup_iters",
    "min_evidence",
    "policy",
    "persistence_k",
    "min_metrics_exceeding",
    "eps_sens",
    "cap_frac",
)


@attrs.frozen
class GateControls:
    """Every knob of the gate. Defaults are the ``tuned_v0`` preset.

    ``null_alpha``/``null_permutations`` add the permutation-calibrated null test (``None``/0
    reproduce the reference rule); ``min_shift`` requires an exceeding metric to have moved by at
    least that much (earth mover's distance in calibrated-range units, default one bin width); ``gain_z`` makes the loss-gain check require a significant
    deficit (0 reproduces the reference rule).
    """

    metric_interval: int = 5
    gate_window: int = 100
    gate_warmup_iters: int = 1000
    eps: float = 0.15
    eps_sens: float | None = 0.04
    cap_frac: float | None = 0.15
    gain_thresh: float | None = -0.003
    gain_z: float = 3.0
    min_evidence: int = 20
    min_metrics_exceeding: int | None = 1
    policy: Policy = "either"
    persistence_k: int | None = 2
    bins: int = 16
    alpha_stat: float = 0.05
    null_alpha: float | None = 0.01
    null_permutations: int = 199
    min_shift: float | None = 0.0625
    regime_anchor: bool = False
    seed: int = 0
    weights: dict[str, float] = attrs.field(
        factory=lambda: {"var_out_k": 0.35, "eff_dim": 0.35, "rankme": 0.20, "cos_disp": 0.10}
    )

    def __attrs_post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise PresetError("invalid gate controls: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """Every invalid control, as text (empty when the controls are usable)."""
        out: list[str] = []
        for name in ("metric_interval", "gate_window", "min_evidence", "bins"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                out.append(f"{name} must be a positive integer")
        if self.gate_warmup_iters < 0:
            out.append("gate_warmup_iters must be >= 0")
        if self.bins < 2:
            out.append("bins must be >= 2")
        if self.metric_interval >= 1 and self.gate_window % self.metric_interval:
            out.append("gate_window must be a multiple of metric_interval")
        if self.policy not in POLICIES:
            out.append(f"policy must be one of {', '.join(POLICIES)}")
        if self.policy in ("persistence", "persistence_stability") and not self.persistence_k:
            out.append("persistence policies need persistence_k >= 1")
        if not self.eps > 0:
            out.append("eps must be > 0")
        if not 0 < self.alpha_stat < 1:
            out.append("alpha_stat must be in (0, 1)")
        if self.null_alpha is not None:
            if not 0 < self.null_alpha < 1:
                out.append("null_alpha must be in (0, 1)")
            elif self.null_permutations + 1 < 1.0 / self.null_alpha:
                out.append(
                    f"null_permutations must be >= {round(1 / self.null_alpha) - 1} "
                    f"for null_alpha {self.null_alpha}"
                )
        if self.min_shift is not None and not 0 <= self.min_shift <= 1:
            out.append("min_shift must be in [0, 1]")
        if self.min_metrics_exceeding is not None and self.min_metrics_exceeding < 0:
            out.append("min_metrics_exceeding must be >= 0")
        if not self.weights or any(not isinstance(v, int | float) for v in self.weights.values()):
            out.append("weights must map metric names to numbers")
        elif sum(abs(v) for v in self.weights.values()) <= 0:
            out.append("weights must not all be zero")
        return out

    @property
    def window_snapshots(self) -> int:
        """``Wm``: probes per window."""
        return self.gate_window // self.metric_interval

    @property
    def null_enabled(self) -> bool:
        return self.null_alpha is not None and self.null_permutations > 0

    def hash_payload(self) -> dict[str, Any]:
        """The fixed object that ``gate_controls_hash`` covers; absent controls are ``null``."""
        payload: dict[str, Any] = attrs.asdict(self)
        for key in _HASH_REQUIRED:
            payload.setdefault(key, None)
        return payload

    def controls_hash(self) -> str:
        """``"sha256:<hex>"`` of the canonical JSON of :meth:`hash_payload`."""
        return prefixed(canonical_digest(self.hash_payload()))

    def with_overrides(self, overrides: Mapping[str, Any]) -> GateControls:
        """A copy with ``overrides`` applied; unknown names and values of the wrong type (checked
        against the field's declared type) are a :class:`PresetError`."""
        fields = attrs.fields_dict(attrs.resolve_types(GateControls))
        unknown = sorted(set(overrides) - set(fields))
        if unknown:
            raise PresetError(
                f"unknown gate control(s) {', '.join(unknown)}; valid: {', '.join(sorted(fields))}"
            )
        wrong = [f"{name}={value!r} (expected {_type_name(fields[name].type)})"
                 for name, value in overrides.items() if not _accepts(fields[name].type, value)]
        if wrong:
            raise PresetError("invalid gate control override: " + "; ".join(wrong))
        try:
            return attrs.evolve(self, **dict(overrides))
        except TypeError as exc:
            raise PresetError(f"invalid gate control override: {exc}") from None


def _accepts(declared: Any, value: Any) -> bool:
    """Whether ``value`` (parsed from JSON) fits the declared field type."""
    origin = get_origin(declared)
    if origin in (Union, types.UnionType):
        return any(_accepts(arm, value) for arm in get_args(declared))
    if origin is Literal:
        return value in get_args(declared)
    if origin is dict:
        key_type, value_type = get_args(declared)
        return isinstance(value, dict) and all(
            _accepts(key_type, k) and _accepts(value_type, v) for k, v in value.items()
        )
    if declared is type(None):
        return value is None
    if isinstance(value, bool) or declared is bool:
        return isinstance(value, bool) and declared is bool
    if declared is int:
        return isinstance(value, int)
    if declared is float:
        return isinstance(value, int | float) and math.isfinite(value)
    return isinstance(declared, type) and isinstance(value, declared)


def _type_name(declared: Any) -> str:
    if get_origin(declared) in (Union, types.UnionType):
        return " or ".join(_type_name(arm) for arm in get_args(declared))
    if get_origin(declared) is Literal:
        return "one of " + ", ".join(map(str, get_args(declared)))
    return "null" if declared is type(None) else getattr(declared, "__name__", str(declared))


@functools.cache
def _preset_table() -> dict[str, dict[str, Any]]:
    text = resources.files("veriscope_gate").joinpath("data", "presets.toml").read_text("utf-8")
    return cast(dict[str, dict[str, Any]], tomllib.loads(text))


def preset_names() -> list[str]:
    """Names of the shipped presets."""
    return sorted(_preset_table())


def preset_descriptions() -> dict[str, str]:
    """Preset name -> one-line description."""
    return {name: str(table.get("description", "")) for name, table in _preset_table().items()}


def load_preset(name: str, overrides: Mapping[str, Any] | None = None) -> GateControls:
    """The controls of preset ``name`` (with optional overrides); unknown names list the valid ones."""
    table = _preset_table().get(name)
    if table is None:
        raise PresetError(f"unknown gate preset {name!r}; valid: {', '.join(preset_names())}")
    values = {k: v for k, v in table.items() if k != "description"}
    values.setdefault("null_alpha", None)
    values.setdefault("min_shift", None)
    if "weights" in values:
        values["weights"] = dict(values["weights"])
    try:
        controls = GateControls(**values)
    except TypeError as exc:
        raise PresetError(f"preset {name!r} is invalid: {exc}") from None
    return controls.with_overrides(overrides) if overrides else controls
