"""The ``ray`` executor (optional extra ``invarlock-core[ray]``): the same queue, Ray's machines.

The driver (this process) keeps the durable queue and the policy: it owns one virtual slot per GPU
in the Ray cluster (per CPU when the cluster has no GPU) and claims tasks for free slots exactly as
local workers do. Each claimed task becomes one Ray task asking for ``num_gpus=required_gpus``; Ray
places a task on a single node, so a multi-GPU task gets all its GPUs on one machine, and Ray sets
``CUDA_VISIBLE_DEVICES`` there. The Ray task runs the same subprocess launcher as the local
executor (timeouts, process-group kill, live log under ``logs/tasks/``), so ``OUTPUT_DIR`` must be
on a filesystem every node shares. The driver heartbeats running claims and records outcomes with
the same failure classes and retry decisions.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import attrs

from invarlock_core.optional_deps import require
from invarlock_core.scheduling.devices import DEFAULT_DEVICE_MEMORY_GB, Device
from invarlock_core.scheduling.executor import ExecutorOptions, RunSummary, summarize_run
from invarlock_core.scheduling.launch import LaunchResult, run_task_process
from invarlock_core.scheduling.local import reclaim_after_crash, runner_lock
from invarlock_core.scheduling.store import Claim, TaskQueue
from invarlock_core.scheduling.tasks import Task
from invarlock_core.scheduling.worker import record_outcome, skip_if_done
from invarlock_core.serialization import structure, unstructure

__all__ = ["RayExecutor", "RayExecutorFactory", "run_on_ray_node"]


def run_on_ray_node(
    task_json: dict[str, Any], attempt: int, output_dir: str, timeout: float
) -> dict[str, Any]:
    """Body of the Ray task: run the task's subprocess on the GPUs Ray assigned to us."""
    import ray

    task = structure(task_json, Task)
    gpu_ids = [str(int(gpu)) for gpu in ray.get_gpu_ids()]
    host = os.uname().nodename
    devices = [
        Device(f"{host}:gpu{gpu}", "cuda", DEFAULT_DEVICE_MEMORY_GB, gpu) for gpu in gpu_ids
    ] or [Device(f"{host}:cpu", "cpu", DEFAULT_DEVICE_MEMORY_GB)]
    result = run_task_process(
        task,
        devices,
        attempt,
        Path(output_dir),
        timeout=timeout,
        heartbeat=lambda: None,
        heartbeat_interval=30.0,
    )
    data: dict[str, Any] = unstructure(result)
    data["devices"] = [device.id for device in devices]
    return data


class RayExecutor:
    """Runs the queue's tasks as Ray tasks."""

    def __init__(self, options: ExecutorOptions) -> None:
        self.options = options
        self.knobs = options.knobs
        self._ray = require("ray", purpose="the ray executor")

    def _init(self) -> None:
        if not self._ray.is_initialized():
            address = self.options.settings.get("address") or os.environ.get("RAY_ADDRESS")
            self._ray.init(address=address or None, log_to_driver=False)

    def devices(self) -> list[Device]:
        self._init()
        resources = self._ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        memory = self.knobs.gpu_memory_per_device_gb or DEFAULT_DEVICE_MEMORY_GB
        if gpus:
            return [Device(f"ray-gpu{index}", "cuda", memory) for index in range(gpus)]
        cpus = max(1, int(resources.get("CPU", 1)))
        return [Device(f"ray-cpu{index}", "cpu", memory) for index in range(cpus)]

    def run(self, queue: TaskQueue) -> RunSummary:
        self._init()
        ray = self._ray
        started = time.monotonic()
        gpu_cluster = any(device.kind == "cuda" for device in queue.devices)
        remote = ray.remote(run_on_ray_node)
        in_flight: dict[Any, tuple[str, Claim]] = {}
        with runner_lock(queue.output_dir):
            reclaim_after_crash(queue)
            for device in queue.devices:
                queue.register_worker(f"ray:{device.id}", device.id, os.getpid())
            while True:
                queue.cancel_blocked(self.knobs.cancel_blocked_tasks_grace_seconds)
                busy = {
                    device
                    for _, claim in in_flight.values()
                    for device in (d.id for d in claim.devices)
                }
                for device in queue.devices:
                    if device.id in busy:
                        continue
                    worker_id = f"ray:{device.id}"
                    claim = queue.claim(worker_id, device.id)
                    if claim is None or skip_if_done(queue, worker_id, claim):
                        continue
                    busy.update(d.id for d in claim.devices)
                    resources = (
                        {"num_gpus": claim.task.required_gpus, "num_cpus": 0}
                        if gpu_cluster
                        else {"num_cpus": claim.task.required_gpus}
                    )
                    ref = remote.options(**resources).remote(
                        unstructure(claim.task),
                        claim.attempt,
                        str(queue.output_dir),
                        self.knobs.timeout_for(claim.task.type.value),
                    )
                    in_flight[ref] = (worker_id, claim)
                queue.write_progress()
                if not in_flight:
                    if queue.unfinished() == 0:
                        break
                    time.sleep(max(0.01, min(self.knobs.worker_idle_sleep, 1.0)))
                    continue
                done, _ = ray.wait(
                    list(in_flight), num_returns=1, timeout=self.knobs.worker_heartbeat_interval
                )
                for worker_id, claim in in_flight.values():
                    queue.heartbeat(worker_id, state="busy", task_id=claim.task.id)
                for ref in done:
                    worker_id, claim = in_flight.pop(ref)
                    self._record(queue, worker_id, claim, ref)
            return summarize_run(queue, time.monotonic() - started)

    def _record(self, queue: TaskQueue, worker_id: str, claim: Claim, ref: Any) -> None:
        try:
            data = self._ray.get(ref)
        except Exception as exc:  # the Ray task itself crashed (node lost, worker died)
            message = f"ray task failed: {type(exc).__name__}: {exc}"
            result = LaunchResult(1, False, 0.0, message)
        else:
            data.pop("devices", None)
            result = structure(data, LaunchResult)
        record_outcome(queue, worker_id, claim, result)


@attrs.frozen
class RayExecutorFactory:
    """Ray cluster executor (``pip install 'invarlock-core[ray]'``)."""

    @property
    def name(self) -> str:
        return "ray"

    @property
    def summary(self) -> str:
        return "tasks as Ray tasks with num_gpus resources (one node per multi-GPU task)"

    def unavailable_reason(self) -> str | None:
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            return "ray is not installed: pip install 'invarlock-core[ray]'"
        return None

    def create(self, options: ExecutorOptions) -> RayExecutor:
        return RayExecutor(options)
