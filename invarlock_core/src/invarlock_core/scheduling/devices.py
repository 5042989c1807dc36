"""The device pool: CUDA GPUs when present, CPU "slots" standing in for them otherwise.

The pool comes from ``CUDA_VISIBLE_DEVICES``, else ``GPU_ID_LIST``, else the GPUs ``nvidia-smi``
lists; ``NUM_GPUS`` clamps it. Without GPUs there are ``NUM_GPUS`` (default: CPU count) slots named
``cpu0``, ``cpu1``...; tasks on them see ``CUDA_VISIBLE_DEVICES=""``. Per-device memory is
``GPU_MEMORY_PER_DEVICE`` / ``GPU_MEMORY_GB``, else what ``nvidia-smi`` reports, else 80 GB.
Free memory is probed with ``nvidia-smi`` and cached for ``GPU_CACHE_TTL`` seconds; a GPU with less
than ``GPU_MIN_FREE_GB`` free, or (``GPU_REQUIRE_IDLE``) running someone else's compute process,
offers nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import Literal

import attrs

from invarlock_core.errors import ConfigError
from invarlock_core.scheduling.knobs import SchedulingKnobs

__all__ = [
    "DEFAULT_DEVICE_MEMORY_GB",
    "Device",
    "GpuInfo",
    "GpuProbe",
    "discover_devices",
    "parse_gpu_query",
]

DEFAULT_DEVICE_MEMORY_GB = 80.0
_MIB_PER_GIB = 1024.0


@attrs.frozen
class Device:
    """One schedulable device. ``cuda_index`` is what ``CUDA_VISIBLE_DEVICES`` gets (None: CPU)."""

    id: str
    kind: Literal["cuda", "cpu"]
    total_gb: float
    cuda_index: str | None = None


@attrs.frozen
class GpuInfo:
    index: str
    uuid: str
    total_gb: float
    free_gb: float


def parse_gpu_query(text: str) -> list[GpuInfo]:
    """Parse ``nvidia-smi --query-gpu=index,uuid,memory.total,memory.free --format=csv,noheader,nounits``."""
    infos = []
    for line in text.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) != 4:
            continue
        try:
            infos.append(
                GpuInfo(
                    parts[0],
                    parts[1],
                    float(parts[2]) / _MIB_PER_GIB,
                    float(parts[3]) / _MIB_PER_GIB,
                )
            )
        except ValueError:
            continue
    return infos


def _nvidia_smi(*args: str) -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _query_gpus() -> list[GpuInfo]:
    out = _nvidia_smi(
        "--query-gpu=index,uuid,memory.total,memory.free", "--format=csv,noheader,nounits"
    )
    return parse_gpu_query(out) if out else []


def _id_list(raw: str, var: str) -> list[str]:
    ids = [part.strip() for part in raw.split(",") if part.strip()]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{var}={raw!r} lists a device twice")
    return ids


def discover_devices(
    knobs: SchedulingKnobs,
    environ: Mapping[str, str] | None = None,
    *,
    gpus: Sequence[GpuInfo] | None = None,
) -> list[Device]:
    """The devices this machine offers the scheduler (``gpus`` overrides the ``nvidia-smi`` probe)."""
    env = os.environ if environ is None else environ
    detected = list(_query_gpus() if gpus is None else gpus)
    by_index = {info.index: info for info in detected}
    visible = env.get("CUDA_VISIBLE_DEVICES", "").strip()
    listed = env.get("GPU_ID_LIST", "").strip()
    if visible and visible != "-1":
        pool = _id_list(visible, "CUDA_VISIBLE_DEVICES")
    elif listed:
        pool = _id_list(listed, "GPU_ID_LIST")
    else:
        pool = [info.index for info in detected]
    if knobs.num_gpus is not None and pool:
        pool = pool[: knobs.num_gpus]
    if pool:
        kind: Literal["cuda", "cpu"] = "cuda" if detected else "cpu"
        devices = []
        for ident in pool:
            info = by_index.get(ident)
            total = knobs.gpu_memory_per_device_gb or (
                info.total_gb if info else DEFAULT_DEVICE_MEMORY_GB
            )
            devices.append(Device(ident, kind, total, ident))
        return devices
    slots = knobs.num_gpus or os.cpu_count() or 1
    total = knobs.gpu_memory_per_device_gb or DEFAULT_DEVICE_MEMORY_GB
    return [Device(f"cpu{index}", "cpu", total) for index in range(slots)]


class GpuProbe:
    """Free memory per device, cached for ``GPU_CACHE_TTL`` seconds, with the eligibility rules."""

    def __init__(self, knobs: SchedulingKnobs) -> None:
        self._knobs = knobs
        self._cached_at = -1e18
        self._free: dict[str, float] = {}
        self._busy: set[str] = set()

    def free_gb(self, device: Device) -> float:
        """Memory a task may use on ``device`` now (0 when the device is not eligible)."""
        usable = device.total_gb * self._knobs.cuda_memory_fraction
        if device.kind == "cpu":
            return usable
        self._refresh()
        free = self._free.get(device.cuda_index or "", device.total_gb)
        if free < self._knobs.gpu_min_free_gb:
            return 0.0
        if self._knobs.gpu_require_idle and (device.cuda_index or "") in self._busy:
            return 0.0
        return min(usable, free)

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._cached_at < self._knobs.gpu_cache_ttl:
            return
        self._cached_at = now
        infos = _query_gpus()
        self._free = {info.index: info.free_gb for info in infos}
        apps = _nvidia_smi("--query-compute-apps=gpu_uuid,pid", "--format=csv,noheader") or ""
        uuids = {line.split(",")[0].strip() for line in apps.splitlines() if line.strip()}
        self._busy = {info.index for info in infos if info.uuid in uuids}
