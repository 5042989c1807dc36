"""One typed configuration for a suite run: defaults < suite defaults < TOML file < environment < flags.

Every environment variable the seeds name for a suite (``PACK_SUITE``, ``DRIFT_CALIBRATION_RUNS``,
``CLEAN_EDIT_RUNS``, ``PACK_BASELINE_STORAGE_MODE``, ``MIN_FREE_DISK_GB`` ...) is an override of one
field of :class:`SuiteConfig`; :data:`ENV_NAMES` is the table. A TOML suite file (``--suite-file``)
uses the field names, plus ``models`` and ``scenario_ids``. The resolved configuration is written to
``OUT/state/suite_config.json`` so a run is reproducible and ``--resume`` needs nothing else.
Scheduling knobs (``WORKER_*``, ``TASK_TIMEOUT_*``, ``GPU_*``) stay in
:class:`invarlock_core.scheduling.SchedulingKnobs`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

import attrs

from invarlock_core.atomic import atomic_write_json
from invarlock_core.errors import ConfigError
from invarlock_core.json_files import read_json
from invarlock_core.serialization import structure, unstructure

__all__ = [
    "ENV_NAMES",
    "SUITE_DEFAULTS",
    "SuiteConfig",
    "read_config",
    "resolve_config",
    "write_config",
]

Mode = Literal["full", "calibrate-only", "run-only"]
Determinism = Literal["throughput", "strict"]
StorageMode = Literal["snapshot_copy", "snapshot_symlink", "save_pretrained"]
BatchEdits = Literal["auto", "true", "false"]

_TRUE: Final = {"1", "true", "yes", "on"}
_FALSE: Final = {"0", "false", "no", "off"}


@attrs.frozen
class SuiteConfig:
    """Everything a suite run depends on (paths are kept as given; the runner resolves them)."""

    suite: str = "subset"
    out: str = ""
    models: tuple[str, ...] = ()
    scenario_ids: tuple[str, ...] = ()
    mode: Mode = "full"
    executor: str = "local"
    determinism: Determinism = "throughput"
    repeats: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    net: bool = False
    calibration_runs: int = attrs.field(default=5, validator=attrs.validators.ge(0))
    clean_runs: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    stress_runs: int = attrs.field(default=2, validator=attrs.validators.ge(1))
    run_error_injection: bool = True
    batch_edits: BatchEdits = "auto"
    cleanup_models: bool = True
    baseline_storage_mode: StorageMode = "snapshot_copy"
    min_free_disk_gb: float = 200.0
    skip_disk_preflight: bool = False
    tuned_params_file: str = ""
    preset_dir: str = ""
    preset_file: str = ""
    dataset: str = ""
    profile: str = "dev"
    tier: str = "balanced"
    seq_len: int = 0
    preview_windows: int = 0
    final_windows: int = 0
    eval_batch: int = 0
    informational_min_fraction: float = 0.5
    pack: bool = True
    pack_dir: str = ""
    sign: bool = True
    signing_key: str = ""
    skip_html: bool = False
    require_pass: bool = False
    release_review: bool = False
    trust_remote_code: bool = False
    warm_start: bool = True
    """Start tasks as forks of their warm worker (imports done once per worker)."""


ENV_NAMES: Final[Mapping[str, str]] = {
    "suite": "PACK_SUITE",
    "out": "PACK_OUTPUT_DIR",
    "mode": "PACK_SUITE_MODE",
    "determinism": "PACK_DETERMINISM",
    "repeats": "PACK_REPEATS",
    "net": "PACK_NET",
    "calibration_runs": "DRIFT_CALIBRATION_RUNS",
    "clean_runs": "CLEAN_EDIT_RUNS",
    "stress_runs": "STRESS_EDIT_RUNS",
    "run_error_injection": "RUN_ERROR_INJECTION",
    "batch_edits": "PACK_USE_BATCH_EDITS",
    "cleanup_models": "PACK_CLEANUP_MODELS",
    "baseline_storage_mode": "PACK_BASELINE_STORAGE_MODE",
    "min_free_disk_gb": "MIN_FREE_DISK_GB",
    "skip_disk_preflight": "PACK_SKIP_DISK_PREFLIGHT",
    "tuned_params_file": "PACK_TUNED_EDIT_PARAMS_FILE",
    "preset_dir": "PACK_CALIBRATION_PRESET_DIR",
    "preset_file": "PACK_CALIBRATION_PRESET_FILE",
    "dataset": "INVARLOCK_DATASET",
    "tier": "INVARLOCK_TIER",
    "seq_len": "INVARLOCK_SEQ_LEN",
    "eval_batch": "INVARLOCK_EVAL_BATCH",
    "informational_min_fraction": "PACK_INFORMATIONAL_MIN_FRACTION",
    "pack_dir": "PACK_DIR",
    "sign": "PACK_SIGN_MANIFEST",
    "signing_key": "PACK_SIGNING_KEY",
    "skip_html": "PACK_SKIP_HTML",
    "require_pass": "PACK_REQUIRE_PASS",
    "release_review": "PACK_RELEASE_REVIEW",
    "trust_remote_code": "INVARLOCK_ALLOW_REMOTE_CODE",
    "warm_start": "PACK_WARM_START",
}
"""Field -> environment variable (the seeds' names)."""

SUITE_DEFAULTS: Final[Mapping[str, Mapping[str, Any]]] = {
    "tiny": {
        "calibration_runs": 2,
        "clean_runs": 2,
        "stress_runs": 1,
        "seq_len": 64,
        "preview_windows": 4,
        "final_windows": 24,
        "min_free_disk_gb": 1.0,
        "dataset": "sample",
    },
}
"""Defaults a suite brings with it (the ``tiny`` suite is sized for a 2-core CPU)."""

_FIELDS: Final = {field.name: field for field in attrs.fields(SuiteConfig)}


def _parse_env(name: str, var: str, text: str) -> Any:
    declared: object = _FIELDS[name].type
    kind = declared if isinstance(declared, str) else getattr(declared, "__name__", "")
    value = text.strip()
    if kind == "bool":
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise ConfigError(f"{var}={text!r} is not a boolean (1/0, true/false)")
    if kind == "int":
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{var}={text!r} is not an integer") from None
    if kind == "float":
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{var}={text!r} is not a number") from None
    return value


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, var in ENV_NAMES.items():
        text = (env.get(var) or "").strip()
        if text and (text != "auto" or name == "batch_edits"):
            values[name] = _parse_env(name, var, text)
    if "out" not in values and env.get("OUTPUT_DIR", "").strip():
        values["out"] = env["OUTPUT_DIR"].strip()
    return values


def _from_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"suite file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"suite file {path} is not readable TOML: {exc}") from None
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"suite file {path}: unknown key {unknown[0]!r}")
    for key in ("tuned_params_file", "preset_dir", "preset_file", "signing_key"):
        if isinstance(data.get(key), str) and data[key]:
            data[key] = str((path.parent / data[key]).resolve())
    return dict(data)


def _build(values: Mapping[str, Any], source: str) -> SuiteConfig:
    data = dict(values)
    for key in ("models", "scenario_ids"):
        if key in data:
            data[key] = tuple(data[key])
    try:
        return structure(data, SuiteConfig)
    except Exception as exc:  # cattrs aggregates; the first message is enough for one line
        detail = getattr(exc, "exceptions", [exc])[0]
        raise ConfigError(f"invalid suite configuration ({source}): {detail}") from None


def resolve_config(
    flags: Mapping[str, Any],
    *,
    env: Mapping[str, str],
    suite_file: Path | None = None,
) -> SuiteConfig:
    """Merge the layers; ``flags`` holds only what the user gave (``None`` values are ignored)."""
    layered: dict[str, Any] = {}
    toml = _from_toml(suite_file) if suite_file is not None else {}
    env_values = _from_env(env)
    given = {key: value for key, value in flags.items() if value is not None}
    suite = given.get("suite") or env_values.get("suite") or toml.get("suite") or "subset"
    layered.update(SUITE_DEFAULTS.get(str(suite), {}))
    for layer in (toml, env_values, given):
        layered.update(layer)
    layered["suite"] = suite
    return _build(layered, "flags, environment and suite file")


def write_config(path: Path, config: SuiteConfig) -> Path:
    """Write the resolved configuration (``state/suite_config.json``); no secrets are in it."""
    data: dict[str, Any] = unstructure(config)
    return atomic_write_json(path, {"format": "invarlock-suite-config-v1", "config": data})


def read_config(path: Path) -> SuiteConfig:
    data = read_json(path, what="suite configuration", error=ConfigError)
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise ConfigError(f"{path} is not a suite configuration")
    return _build(data["config"], str(path))
