"""Per-model validation-suite task graphs (batch and per-edit paths) and the suite shapes.

For one model the graph is::

    SETUP_BASELINE
      ├─ CALIBRATION_RUN × N ──> GENERATE_PRESET ──┐
      ├─ CREATE_EDIT × edits (or CREATE_EDITS_BATCH) ┴─> EVALUATE_EDIT × runs ──> CLEANUP
      └─ CREATE_ERROR × types ─────────────────────┴─> EVALUATE_ERROR ──> CLEANUP

Durations are estimates that grow with the model's weights; they drive the simulator and the
lower bound, never a real run. A ``command_factory`` attaches the real commands (the suite maps
``EVALUATE_EDIT`` to an ``invarlock evaluate`` run, for example).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import attrs

from invarlock_core.errors import UsageError
from invarlock_core.scheduling.memory import MemoryPlanner, ModelProfile
from invarlock_core.scheduling.tasks import Task, TaskCommand, TaskGraph, TaskType

__all__ = [
    "DEFAULT_ERROR_TYPES",
    "SUITE_SHAPES",
    "BatchMode",
    "ScenarioCounts",
    "SuiteShape",
    "build_model_graph",
    "build_suite_graph",
    "estimated_seconds",
    "suite_shape",
]

BatchMode = Literal["auto", "true", "false"]

DEFAULT_EDITS: tuple[str, ...] = ("quant_rtn", "fp8_quant", "magnitude_prune", "lowrank_svd")
DEFAULT_ERROR_TYPES: tuple[str, ...] = (
    "nan_injection",
    "inf_injection",
    "shape_mismatch",
    "missing_tensors",
    "extreme_quant",
    "scale_explosion",
    "rank_collapse",
    "norm_collapse",
    "weight_tying_break",
    "rmt_norm_noise",
    "spectral_moderate_scale",
    "ve_mlp_scale_skew",
)
LEGACY_ERROR_TYPES: tuple[str, ...] = (
    "nan_injection",
    "inf_injection",
    "extreme_quant",
    "scale_explosion",
    "weight_tying_break",
)

_LARGE_MODEL_GB = 100.0


@attrs.frozen
class ScenarioCounts:
    """How many of each scenario a model runs (the documented defaults)."""

    calibration_runs: int = 5
    clean_edits: tuple[str, ...] = DEFAULT_EDITS
    stress_edits: tuple[str, ...] = DEFAULT_EDITS
    clean_runs: int = 3
    stress_runs: int = 2
    error_types: tuple[str, ...] = DEFAULT_ERROR_TYPES
    batch_edits: BatchMode = "auto"
    cleanup: bool = True


@attrs.frozen
class SuiteShape:
    """A named set of models with their profiles."""

    name: str
    models: tuple[ModelProfile, ...]
    counts: ScenarioCounts = ScenarioCounts()


def _profile(name: str, gb: float, layers: int, kv: int, moe: bool = False) -> ModelProfile:
    return ModelProfile(name, gb, num_layers=layers, num_kv_heads=kv, head_dim=128, is_moe=moe)


_MISTRAL = _profile("mistral-7b", 14, 32, 8)
_QWEN14 = _profile("qwen2.5-14b", 28, 48, 8)
_QWEN32 = _profile("qwen2.5-32b", 64, 64, 8)
_YI34 = _profile("yi-34b", 68, 60, 8)
_MIXTRAL = _profile("mixtral-8x7b", 90, 32, 8, moe=True)
_QWEN3_8 = _profile("qwen3-8b", 16, 36, 8)
_QWEN72 = _profile("qwen1.5-72b", 144, 80, 64)

SUITE_SHAPES: Mapping[str, SuiteShape] = {
    "subset": SuiteShape("subset", (_MISTRAL,)),
    "showcase": SuiteShape("showcase", (_MISTRAL, _QWEN14, _QWEN32)),
    "workshop3": SuiteShape("workshop3", (_MISTRAL, _MIXTRAL, _YI34)),
    "full": SuiteShape("full", (_MISTRAL, _QWEN14, _QWEN32, _YI34, _MIXTRAL, _QWEN3_8)),
    "full-legacy": SuiteShape(
        "full-legacy",
        (_MISTRAL, _QWEN14, _QWEN32, _YI34, _MIXTRAL, _QWEN72),
        ScenarioCounts(error_types=LEGACY_ERROR_TYPES, batch_edits="true", cleanup=False),
    ),
}
"""``full`` is the current six-model suite; ``full-legacy`` the older one with Qwen1.5-72B."""


def suite_shape(name: str) -> SuiteShape:
    try:
        return SUITE_SHAPES[name]
    except KeyError:
        raise UsageError(
            f"unknown suite shape {name!r}; valid: {', '.join(SUITE_SHAPES)}"
        ) from None


_DURATION: Mapping[TaskType, tuple[float, float]] = {
    TaskType.SETUP_BASELINE: (120.0, 10.0),
    TaskType.CALIBRATION_RUN: (60.0, 6.0),
    TaskType.GENERATE_PRESET: (30.0, 0.0),
    TaskType.CREATE_EDIT: (60.0, 4.0),
    TaskType.CREATE_EDITS_BATCH: (60.0, 4.0),
    TaskType.EVALUATE_EDIT: (90.0, 8.0),
    TaskType.CREATE_ERROR: (45.0, 3.0),
    TaskType.EVALUATE_ERROR: (90.0, 8.0),
    TaskType.CLEANUP: (10.0, 0.0),
    TaskType.GENERIC: (60.0, 0.0),
}


def estimated_seconds(task_type: TaskType, weights_gb: float, count: int = 1) -> float:
    """Duration model: ``fixed + per_gb · weights`` (times ``count`` edits for a batch task)."""
    fixed, per_gb = _DURATION[task_type]
    return count * (fixed + per_gb * weights_gb)


def _use_batch(mode: BatchMode, profile: ModelProfile, cleanup: bool) -> bool:
    if mode == "true":
        return True
    if mode == "false":
        return False
    # auto: per-edit for cleanup-safe runs; large and MoE models never batch.
    return not cleanup and not profile.is_moe and profile.weights_gb < _LARGE_MODEL_GB


def build_model_graph(
    profile: ModelProfile,
    counts: ScenarioCounts,
    planner: MemoryPlanner,
    command_factory: Callable[[Task], TaskCommand | None] | None = None,
) -> list[Task]:
    """All tasks for one model, planned for memory, in insertion (FIFO) order."""
    name = profile.name
    tasks: list[Task] = []

    def add(
        task_id: str, kind: TaskType, deps: Sequence[str] = (), count: int = 1, **labels: str
    ) -> str:
        task = Task(
            id=f"{name}.{task_id}",
            type=kind,
            model=name,
            deps=tuple(deps),
            estimated_seconds=estimated_seconds(kind, profile.weights_gb, count),
            labels=dict(labels),
        )
        task = planner.plan(task, profile)
        if command_factory is not None:
            task = attrs.evolve(task, command=command_factory(task))
        tasks.append(task)
        return task.id

    setup = add("SETUP_BASELINE", TaskType.SETUP_BASELINE)
    calibrations = [
        add(f"CALIBRATION_RUN.{i:03d}", TaskType.CALIBRATION_RUN, [setup], run=str(i))
        for i in range(1, counts.calibration_runs + 1)
    ]
    preset = add("GENERATE_PRESET", TaskType.GENERATE_PRESET, calibrations or [setup])
    edits = [(f"{edit}_clean", counts.clean_runs) for edit in counts.clean_edits] + [
        (f"{edit}_stress", counts.stress_runs) for edit in counts.stress_edits
    ]
    creators: dict[str, str] = {}
    if edits and _use_batch(counts.batch_edits, profile, counts.cleanup):
        batch = add("CREATE_EDITS_BATCH", TaskType.CREATE_EDITS_BATCH, [setup], count=len(edits))
        creators = {edit: batch for edit, _ in edits}
    else:
        for edit, _ in edits:
            creators[edit] = add(f"CREATE_EDIT.{edit}", TaskType.CREATE_EDIT, [setup], edit=edit)
    for edit, runs in edits:
        evaluations = [
            add(
                f"EVALUATE_EDIT.{edit}.run_{run}",
                TaskType.EVALUATE_EDIT,
                [creators[edit], preset],
                edit=edit,
                run=str(run),
            )
            for run in range(1, runs + 1)
        ]
        if counts.cleanup and evaluations:
            add(f"CLEANUP.{edit}", TaskType.CLEANUP, evaluations, edit=edit)
    for error in counts.error_types:
        created = add(f"CREATE_ERROR.{error}", TaskType.CREATE_ERROR, [setup], error=error)
        evaluated = add(
            f"EVALUATE_ERROR.{error}", TaskType.EVALUATE_ERROR, [created, preset], error=error
        )
        if counts.cleanup:
            add(f"CLEANUP.error_{error}", TaskType.CLEANUP, [evaluated], error=error)
    return tasks


def build_suite_graph(
    shape: SuiteShape | str,
    planner: MemoryPlanner,
    *,
    counts: ScenarioCounts | None = None,
    command_factory: Callable[[Task], TaskCommand | None] | None = None,
) -> TaskGraph:
    """The whole suite's graph: every model's tasks, models in the shape's order."""
    resolved = suite_shape(shape) if isinstance(shape, str) else shape
    chosen = counts if counts is not None else resolved.counts
    tasks = [
        task
        for profile in resolved.models
        for task in build_model_graph(profile, chosen, planner, command_factory)
    ]
    return TaskGraph(tuple(tasks), name=resolved.name)
