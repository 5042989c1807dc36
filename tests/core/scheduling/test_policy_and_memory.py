"""Priorities, memory-fit selection and memory planning."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invarlock_core.errors import UsageError
from invarlock_core.scheduling import MemoryPlanner, ModelProfile, SchedulingKnobs, Task, TaskType
from invarlock_core.scheduling.memory import kv_cache_gb
from invarlock_core.scheduling.policy import (
    Candidate,
    DeviceSlot,
    FifoPolicy,
    ModelProgress,
    SchedulerView,
    SmallFirstPolicy,
    choose,
    make_policy,
    static_assignment,
)

POLICY = SmallFirstPolicy()


@pytest.mark.parametrize(
    ("kind", "size", "dependents", "expected"),
    [
        (TaskType.SETUP_BASELINE, 14, 0, 90 + 30 + 50),
        (TaskType.CALIBRATION_RUN, 28, 0, 85 + 30 + 20),
        (TaskType.GENERATE_PRESET, 64, 3, 75 + 20 + 6),
        (TaskType.CREATE_EDIT, 90, 0, 70 + 10),
        (TaskType.CREATE_EDITS_BATCH, 144, 0, 70),
        (TaskType.EVALUATE_EDIT, 16, 50, 65 + 30 + 20),  # unblock capped at +20
        (TaskType.CREATE_ERROR, 68, 1, 60 + 20 + 2),
        (TaskType.EVALUATE_ERROR, 100, 0, 55),
    ],
)
def test_static_priorities_follow_the_seed_table(
    kind: TaskType, size: float, dependents: int, expected: float
) -> None:
    task = Task("t", type=kind, model_size_gb=size)
    assert POLICY.static_priority(task, dependents, 0) == expected


def _cand(
    task_id: str,
    model: str = "m",
    static: float = 100.0,
    memory: float = 10.0,
    gpus: int = 1,
    since: float = 0.0,
) -> Candidate:
    return Candidate(task_id, TaskType.EVALUATE_EDIT, model, memory, gpus, static, 0, since)


def test_dynamic_boosts_age_fairness_and_work_stealing_are_capped() -> None:
    progress = {"lagging": ModelProgress(100, 100), "ahead": ModelProgress(100, 10)}
    view = SchedulerView.build(3600.0, {"ahead": 10}, progress)
    # age: 3600 s = 12 steps of 5 min, capped at 10; fairness: 10 running x 3 capped at 15.
    assert POLICY.bonus(_cand("a", "ahead"), view) == 10 - 15 + 0
    steal = POLICY.bonus(_cand("b", "lagging"), view) - 10
    assert 0 < steal <= POLICY.steal_cap
    assert POLICY.bonus_bound(view, "lagging") >= POLICY.bonus(_cand("b", "lagging"), view)


def test_memory_fit_selection_matches_the_seed_example() -> None:
    ready = [
        Candidate(
            "qwen-14b_CALIBRATION_RUN_002", TaskType.CALIBRATION_RUN, "qwen", 24, 1, 85, 0, 0
        ),
        Candidate(
            "mixtral_CREATE_EDITS_BATCH_001",
            TaskType.CREATE_EDITS_BATCH,
            "mixtral",
            92,
            1,
            70,
            1,
            0,
        ),
        Candidate("yi-34b_EVALUATE_EDIT_001", TaskType.EVALUATE_EDIT, "yi", 72, 1, 65, 2, 0),
    ]
    ordered = sorted(ready, key=lambda c: -c.static_priority)
    choice = choose(ordered, DeviceSlot("2", 28.0), [], SchedulerView(0.0), FifoPolicy())
    assert choice is not None
    assert choice.task_id == "qwen-14b_CALIBRATION_RUN_002"
    assert choose(ordered[1:], DeviceSlot("2", 28.0), [], SchedulerView(0.0), FifoPolicy()) is None


def test_multi_device_tasks_take_the_claimer_and_the_roomiest_free_devices() -> None:
    wide = _cand("wide", memory=150.0, gpus=2)
    choice = choose(
        [wide],
        DeviceSlot("0", 80),
        [DeviceSlot("1", 40), DeviceSlot("3", 80)],
        SchedulerView(0.0),
        POLICY,
    )
    assert choice is not None
    assert choice.devices == ("0", "3")
    assert (
        choose([wide], DeviceSlot("0", 80), [DeviceSlot("1", 40)], SchedulerView(0.0), POLICY)
        is None
    )


candidates = st.lists(
    st.builds(
        Candidate,
        id=st.uuids().map(str),
        type=st.sampled_from(list(TaskType)),
        model=st.sampled_from(["a", "b", "c"]),
        memory_gb=st.floats(0, 300),
        required_gpus=st.integers(1, 3),
        static_priority=st.integers(40, 200).map(float),
        seq=st.integers(0, 1000),
        ready_since=st.floats(0, 5000),
    ),
    max_size=30,
)


@given(
    ready=candidates,
    own=st.floats(0, 80),
    free=st.lists(st.floats(0, 80), max_size=4),
    running=st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(0, 8)),
    remaining=st.lists(st.floats(0, 100), min_size=3, max_size=3),
)
def test_choose_equals_a_full_scan_and_only_returns_tasks_that_fit(
    ready: list[Candidate],
    own: float,
    free: list[float],
    running: dict[str, int],
    remaining: list[float],
) -> None:
    view = SchedulerView.build(
        6000.0, running, {m: ModelProgress(100, r) for m, r in zip("abc", remaining)}, 0.0
    )
    ordered = sorted(ready, key=lambda c: (-c.static_priority, c.seq))
    slots = [DeviceSlot(str(i + 1), gb) for i, gb in enumerate(free)]
    choice = choose(ordered, DeviceSlot("0", own), slots, view, POLICY)

    def fits(c: Candidate) -> bool:
        per = c.memory_gb / c.required_gpus
        return (
            per <= own + 1e-9
            and sum(1 for s in slots if s.free_gb + 1e-9 >= per) >= c.required_gpus - 1
        )

    fitting = [c for c in ordered if fits(c)]
    if not fitting:
        assert choice is None
        return
    best = max(c.static_priority + POLICY.bonus(c, view) for c in fitting)
    assert choice is not None
    assert math.isclose(choice.score, best)
    chosen = next(c for c in ordered if c.id == choice.task_id)
    assert fits(chosen)
    assert len(choice.devices) == chosen.required_gpus
    assert choice.devices[0] == "0"


def test_static_assignment_gives_every_model_a_wide_enough_group() -> None:
    tasks = [
        Task(f"{m}.{i}", model=m, required_gpus=g, estimated_seconds=s)
        for m, g, s in [("big", 2, 900), ("mid", 1, 400), ("small", 1, 100)]
        for i in range(3)
    ]
    groups = static_assignment(tasks, ["0", "1", "2", "3"])
    assert len(groups["big"]) >= 2
    assert all(groups[m] for m in ("mid", "small"))
    with pytest.raises(UsageError, match="unknown scheduling policy"):
        make_policy("random")


def test_kv_cache_and_task_memory_follow_the_reference_formulas() -> None:
    mistral = ModelProfile("mistral-7b", 14.0, num_layers=32, num_kv_heads=8, head_dim=128)
    assert kv_cache_gb(mistral, 32, 512) == pytest.approx(2 * 32 * 32 * 512 * 8 * 128 * 2 / 2**30)
    planner = MemoryPlanner(SchedulingKnobs(), device_memory_gb=80.0)
    assert planner.task_memory_gb(TaskType.EVALUATE_EDIT, mistral) == pytest.approx(
        14 + 2 + 6
    )  # KV = 2 GiB
    assert planner.task_memory_gb(TaskType.SETUP_BASELINE, mistral) == 18
    assert planner.task_memory_gb(TaskType.CREATE_EDIT, mistral) == 22
    assert planner.task_memory_gb(TaskType.CREATE_EDITS_BATCH, mistral) == 36
    assert planner.required_gpus(70.0) == 1  # 80 x 0.92 = 73.6 usable
    assert planner.required_gpus(74.0) == 2
    planned = planner.plan(
        Task("e", type=TaskType.EVALUATE_EDIT), ModelProfile("mixtral", 90.0, is_moe=True)
    )
    assert planned.required_gpus == 2
    assert planned.model_size_gb == 90.0
    assert planner.minimum_gpus(100.0) == planner.required_gpus(100.0)


@given(memory=st.floats(0, 2000), big=st.floats(20, 400), small=st.floats(10, 400))
def test_less_memory_per_device_never_asks_for_fewer_devices(
    memory: float, big: float, small: float
) -> None:
    low, high = sorted((big, small))
    assert MemoryPlanner(device_memory_gb=low).required_gpus(memory) >= MemoryPlanner(
        device_memory_gb=high
    ).required_gpus(memory)
    planner = MemoryPlanner(device_memory_gb=high)
    assert planner.required_gpus(memory) * planner.usable_per_device_gb >= memory - 1e-6


def test_model_profile_from_an_hf_config() -> None:
    profile = ModelProfile.from_hf_config(
        "q",
        {
            "num_hidden_layers": 28,
            "num_attention_heads": 16,
            "num_key_value_heads": 4,
            "hidden_size": 2048,
        },
        3.0,
    )
    assert (profile.num_layers, profile.num_kv_heads, profile.head_dim, profile.is_moe) == (
        28,
        4,
        128,
        False,
    )
    assert ModelProfile.from_json(profile.to_json()) == profile
