"""Failure classes and retries, knobs from the environment, and the device pool."""

from __future__ import annotations

import random
import signal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invarlock_core.errors import ConfigError
from invarlock_core.scheduling import (
    FailureClass,
    SchedulingKnobs,
    classify_failure,
    decide_retry,
    discover_devices,
)
from invarlock_core.scheduling.devices import GpuInfo, parse_gpu_query
from invarlock_core.scheduling.failures import backoff_seconds


@pytest.mark.parametrize(
    ("code", "log", "kwargs", "expected"),
    [
        (1, "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate", {}, FailureClass.OOM),
        (-signal.SIGKILL, "", {}, FailureClass.OOM),
        (-signal.SIGKILL, "", {"killed_by_scheduler": True}, FailureClass.UNKNOWN),
        (1, "ModuleNotFoundError: No module named 'x'\nCUDA out of memory", {}, FailureClass.OOM),
        (1, "OSError: [Errno 28] No space left on device", {}, FailureClass.PERMANENT),
        (2, "error: bad flag", {}, FailureClass.PERMANENT),
        (127, "", {}, FailureClass.PERMANENT),
        (1, "requests.exceptions.ConnectionError: reset", {}, FailureClass.TRANSIENT),
        (None, "", {"timed_out": True}, FailureClass.TRANSIENT),
        (1, "ValueError: something", {}, FailureClass.UNKNOWN),
    ],
)
def test_classification_order(
    code: int | None, log: str, kwargs: dict[str, bool], expected: FailureClass
) -> None:
    assert classify_failure(code, log, **kwargs) is expected


def test_retry_decisions() -> None:
    knobs = SchedulingKnobs()
    assert not decide_retry(FailureClass.PERMANENT, 1, knobs).retry
    assert decide_retry(FailureClass.TRANSIENT, 3, knobs).retry
    assert not decide_retry(FailureClass.TRANSIENT, 4, knobs).retry
    oom = decide_retry(FailureClass.OOM, 1, knobs, batch_size=2, seq_len=200)
    assert (oom.batch_size, oom.seq_len) == (1, 128)
    oom = decide_retry(FailureClass.OOM, 1, knobs)
    assert (oom.batch_size, oom.seq_len) == (16, 256)
    assert not decide_retry(FailureClass.UNKNOWN, 1, knobs, max_retries=0).retry


@given(k=st.integers(0, 20), seed=st.integers(0, 1000))
def test_backoff_doubles_with_jitter_and_respects_the_cap(k: int, seed: int) -> None:
    knobs = SchedulingKnobs()
    delay = backoff_seconds(k, knobs, random.Random(seed))
    nominal = min(300.0, 30.0 * 2**k)
    assert 0.8 * nominal - 1e-9 <= delay <= min(300.0, 1.2 * nominal) + 1e-9


def test_knobs_from_environment() -> None:
    knobs = SchedulingKnobs.from_env(
        {
            "GPU_MEMORY_GB": "48",
            "WORKER_TIMEOUT": "60",
            "GPU_REQUIRE_IDLE": "false",
            "NUM_GPUS": "auto",
            "TASK_TIMEOUT_CREATE_EDIT": "120",
            "TASK_TIMEOUT_DEFAULT": "900",
            "WORKER_MAX_FAILURES": "3",
        }
    )
    assert knobs.gpu_memory_per_device_gb == 48
    assert knobs.worker_timeout == 60
    assert not knobs.gpu_require_idle
    assert knobs.num_gpus is None
    assert knobs.worker_max_failures == 3
    assert knobs.timeout_for("CREATE_EDIT") == 120
    assert knobs.timeout_for("EVALUATE_EDIT") == 900
    assert (
        SchedulingKnobs.from_env(
            {"GPU_MEMORY_PER_DEVICE": "40", "GPU_MEMORY_GB": "48"}
        ).gpu_memory_per_device_gb
        == 40
    )
    defaults = SchedulingKnobs.from_env({})
    assert (
        defaults.gpu_reservation_ttl,
        defaults.cancel_blocked_tasks_grace_seconds,
        defaults.task_timeout_default,
    ) == (60, 90, 21600)
    for bad, match in [
        ({"WORKER_MAX_FAILURES": "1.5"}, "whole number"),
        ({"GPU_REQUIRE_IDLE": "maybe"}, "boolean"),
        ({"CUDA_MEMORY_FRACTION": "1.5"}, r"\(0, 1\]"),
        ({"WORKER_TIMEOUT": "-1"}, ">= 0"),
        ({"NUM_GPUS": "0"}, "at least 1"),
    ]:
        with pytest.raises(ConfigError, match=match):
            SchedulingKnobs.from_env(bad)


def test_device_pool_from_environment_and_probe() -> None:
    knobs = SchedulingKnobs()
    gpus = [GpuInfo(str(i), f"GPU-{i}", 80.0, 79.0) for i in range(4)]
    assert [d.id for d in discover_devices(knobs, {"CUDA_VISIBLE_DEVICES": "2,3"}, gpus=gpus)] == [
        "2",
        "3",
    ]
    assert [d.id for d in discover_devices(knobs, {"GPU_ID_LIST": "1,3"}, gpus=gpus)] == ["1", "3"]
    clamped = discover_devices(SchedulingKnobs(num_gpus=2), {}, gpus=gpus)
    assert [d.id for d in clamped] == ["0", "1"]
    assert clamped[0].kind == "cuda"
    assert clamped[0].total_gb == 80
    cpu = discover_devices(SchedulingKnobs(num_gpus=3, gpu_memory_per_device_gb=24), {}, gpus=[])
    assert [(d.id, d.kind, d.total_gb, d.cuda_index) for d in cpu] == [
        (f"cpu{i}", "cpu", 24, None) for i in range(3)
    ]
    listed = discover_devices(knobs, {"GPU_ID_LIST": "4,5"}, gpus=[])
    assert [(d.kind, d.cuda_index) for d in listed] == [("cpu", "4"), ("cpu", "5")]
    with pytest.raises(ConfigError, match="twice"):
        discover_devices(knobs, {"CUDA_VISIBLE_DEVICES": "1,1"}, gpus=gpus)
    text = "0, GPU-aaa, 81920, 40960\n1, GPU-bbb, 81920, 81000\nbroken line\n"
    parsed = parse_gpu_query(text)
    assert [(g.index, g.uuid, g.total_gb, g.free_gb) for g in parsed] == [
        ("0", "GPU-aaa", 80.0, 40.0),
        ("1", "GPU-bbb", 80.0, 81000 / 1024),
    ]
