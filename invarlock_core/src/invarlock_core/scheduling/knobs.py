"""Scheduling knobs: hardware, memory-planning and reliability settings, read from the environment.

Every knob has a documented environment variable and default (``GPU_MEMORY_PER_DEVICE``,
``WORKER_TIMEOUT``, ``TASK_TIMEOUT_<TYPE>`` ...). :meth:`SchedulingKnobs.from_env` reads them;
``attrs.evolve`` applies CLI overrides on top, so the precedence is defaults < environment < flags.
A malformed value is a :class:`~invarlock_core.errors.ConfigError` naming the variable.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import attrs

from invarlock_core.errors import ConfigError

__all__ = ["KNOB_DOCS", "SchedulingKnobs"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@attrs.frozen
class SchedulingKnobs:
    """All scheduler settings, with their documented defaults (seconds, gigabytes)."""

    # Hardware (K-02).
    num_gpus: int | None = None
    gpu_memory_per_device_gb: float | None = None
    gpu_min_free_gb: float = 10.0
    gpu_require_idle: bool = True
    gpu_cache_ttl: float = 5.0
    gpu_reservation_ttl: float = 60.0
    gpu_reservation_lock_timeout: float = 5.0
    # Memory planning (K-06).
    cuda_memory_fraction: float = 0.92
    model_load_overhead_gb: float = 4.0
    edit_overhead_gb: float = 8.0
    batch_edit_overhead_gb: float = 8.0
    invarlock_overhead_gb: float = 6.0
    # Workers and reliability (K-07).
    worker_heartbeat_interval: float = 30.0
    worker_idle_sleep: float = 5.0
    worker_max_failures: int = 10
    worker_timeout: float = 2700.0
    cancel_blocked_tasks_grace_seconds: float = 90.0
    task_timeout_default: float = 21600.0
    task_timeouts: Mapping[str, float] = attrs.field(factory=dict)
    # Retries (reference behaviour: 30·2^k s ±20 %, capped at 300 s, 3 retries).
    task_max_retries: int = 3
    retry_backoff_base: float = 30.0
    retry_backoff_max: float = 300.0
    retry_jitter: float = 0.2
    resume_mode: bool = True

    def timeout_for(self, task_type: str) -> float:
        """``TASK_TIMEOUT_<TYPE>`` when set, else ``TASK_TIMEOUT_DEFAULT``."""
        return self.task_timeouts.get(task_type.upper(), self.task_timeout_default)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SchedulingKnobs:
        """Read every knob from ``environ`` (``os.environ`` by default); unset ones keep defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in attrs.fields(cls):
            var = _ENV_NAMES.get(field.name)
            if var is None or var not in env or env[var].strip() in ("", "auto"):
                continue
            values[field.name] = _parse(var, env[var], field.type)
        if "gpu_memory_per_device_gb" not in values and env.get(
            "GPU_MEMORY_GB", ""
        ).strip() not in (
            "",
            "auto",
        ):
            values["gpu_memory_per_device_gb"] = _parse(
                "GPU_MEMORY_GB", env["GPU_MEMORY_GB"], "float"
            )
        timeouts = {
            name[len("TASK_TIMEOUT_") :]: _parse(name, value, "float")
            for name, value in env.items()
            if name.startswith("TASK_TIMEOUT_") and name != "TASK_TIMEOUT_DEFAULT" and value.strip()
        }
        if timeouts:
            values["task_timeouts"] = timeouts
        return cls(**values)  # type: ignore[arg-type]


_ENV_NAMES = {
    "num_gpus": "NUM_GPUS",
    "gpu_memory_per_device_gb": "GPU_MEMORY_PER_DEVICE",
    "gpu_min_free_gb": "GPU_MIN_FREE_GB",
    "gpu_require_idle": "GPU_REQUIRE_IDLE",
    "gpu_cache_ttl": "GPU_CACHE_TTL",
    "gpu_reservation_ttl": "GPU_RESERVATION_TTL",
    "gpu_reservation_lock_timeout": "GPU_RESERVATION_LOCK_TIMEOUT",
    "cuda_memory_fraction": "CUDA_MEMORY_FRACTION",
    "model_load_overhead_gb": "MODEL_LOAD_OVERHEAD_GB",
    "edit_overhead_gb": "EDIT_OVERHEAD_GB",
    "batch_edit_overhead_gb": "BATCH_EDIT_OVERHEAD_GB",
    "invarlock_overhead_gb": "INVARLOCK_OVERHEAD_GB",
    "worker_heartbeat_interval": "WORKER_HEARTBEAT_INTERVAL",
    "worker_idle_sleep": "WORKER_IDLE_SLEEP",
    "worker_max_failures": "WORKER_MAX_FAILURES",
    "worker_timeout": "WORKER_TIMEOUT",
    "cancel_blocked_tasks_grace_seconds": "CANCEL_BLOCKED_TASKS_GRACE_SECONDS",
    "task_timeout_default": "TASK_TIMEOUT_DEFAULT",
    "task_max_retries": "TASK_MAX_RETRIES",
    "retry_backoff_base": "RETRY_BACKOFF_BASE",
    "retry_backoff_max": "RETRY_BACKOFF_MAX",
    "retry_jitter": "RETRY_JITTER",
    "resume_mode": "RESUME_MODE",
}

KNOB_DOCS: Mapping[str, str] = {
    "NUM_GPUS": "devices to use (auto: the whole pool), clamped to the pool",
    "GPU_MEMORY_PER_DEVICE": "per-device memory (GB) used by the planner; defaults to GPU_MEMORY_GB",
    "GPU_MEMORY_GB": "per-device memory hint (GB) when the hardware cannot be queried",
    "GPU_MIN_FREE_GB": "a GPU with less free memory than this is not eligible",
    "GPU_REQUIRE_IDLE": "a GPU running other compute processes is not eligible",
    "GPU_CACHE_TTL": "seconds a GPU memory probe is reused",
    "GPU_RESERVATION_TTL": "seconds after which a reservation not renewed by a heartbeat expires",
    "GPU_RESERVATION_LOCK_TIMEOUT": "seconds a claim waits for the scheduler lock before retrying later",
    "CUDA_MEMORY_FRACTION": "fraction of each device's memory the planner may fill",
    "MODEL_LOAD_OVERHEAD_GB": "added to the weights of SETUP_BASELINE tasks",
    "EDIT_OVERHEAD_GB": "added to the weights of CREATE_EDIT and CREATE_ERROR tasks",
    "BATCH_EDIT_OVERHEAD_GB": "added to twice the weights of CREATE_EDITS_BATCH tasks",
    "INVARLOCK_OVERHEAD_GB": "added to weights + KV cache of evaluation and calibration tasks",
    "WORKER_HEARTBEAT_INTERVAL": "seconds between worker heartbeats",
    "WORKER_IDLE_SLEEP": "seconds a worker sleeps when nothing fits",
    "WORKER_MAX_FAILURES": "a worker stops after this many failed tasks",
    "WORKER_TIMEOUT": "a worker silent for this many seconds is dead; its task is reclaimed",
    "CANCEL_BLOCKED_TASKS_GRACE_SECONDS": "dependents of a failed task are failed after this grace",
    "TASK_TIMEOUT_DEFAULT": "seconds before a task's process group is killed",
    "TASK_TIMEOUT_<TYPE>": "per-type timeout, e.g. TASK_TIMEOUT_CREATE_EDIT",
    "TASK_MAX_RETRIES": "retries of a transient, OOM or unknown failure",
    "RETRY_BACKOFF_BASE": "first retry delay in seconds (doubles each retry)",
    "RETRY_BACKOFF_MAX": "cap on the retry delay in seconds",
    "RETRY_JITTER": "relative jitter on retry delays (0.2 = ±20 %)",
    "RESUME_MODE": "skip a task whose declared outputs already exist",
}
"""One line per knob, for ``docs/reference/scheduling-knobs.md`` and ``--help`` texts."""


def _parse(var: str, raw: str, kind: object) -> object:
    text = raw.strip()
    kind_name = str(kind)
    try:
        if "bool" in kind_name:
            low = text.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(text)
        if "int" in kind_name and "float" not in kind_name:
            value: float = int(text)
        else:
            value = float(text)
    except ValueError:
        raise ConfigError(f"{var}={raw!r} is not a valid {_kind_word(kind_name)}") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{var}={raw!r} must be a finite number >= 0")
    if var == "CUDA_MEMORY_FRACTION" and not 0 < value <= 1:
        raise ConfigError(f"{var}={raw!r} must be in (0, 1]")
    if var == "NUM_GPUS" and value < 1:
        raise ConfigError(f"{var}={raw!r} must be at least 1")
    return value


def _kind_word(kind_name: str) -> str:
    if "bool" in kind_name:
        return "boolean (true/false)"
    if "int" in kind_name and "float" not in kind_name:
        return "whole number"
    return "number"
