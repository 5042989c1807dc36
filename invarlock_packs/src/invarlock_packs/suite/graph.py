"""The task graph of a suite run, built from the run's models and its effective scenario manifest.

Per model (task ids are ``<slug>.<TYPE>[.<scenario>][.run_<n>]``)::

    SETUP_BASELINE
      ├─ CALIBRATION_RUN × DRIFT_CALIBRATION_RUNS ──> GENERATE_PRESET ─────────┐
      ├─ CREATE_EDIT × edit scenarios (or one CREATE_EDITS_BATCH) ─> EVALUATE_EDIT × runs ─> CLEANUP
      └─ CREATE_ERROR × error scenarios ──────────────────────────> EVALUATE_ERROR ─> CLEANUP

A reused preset (``PACK_CALIBRATION_PRESET_DIR`` / ``_FILE``) drops the calibration runs; the
preset task then copies it into ``OUT/presets/``. ``--calibrate-only`` keeps only the first three
task types; ``--repeats N`` adds N evaluations of the first edit scenario (``<slug>/repeats/``). Every task runs :func:`invarlock_packs.suite.task_work.run_task` with a small
parameter mapping; everything else it needs is in ``OUT/state/``. Each task declares its output
file, so a resumed run completes tasks whose outputs exist without running them again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import attrs

from invarlock_core.scheduling import (
    MemoryPlanner,
    ModelProfile,
    Task,
    TaskCommand,
    TaskGraph,
    TaskType,
)
from invarlock_core.scheduling.suite_graph import estimated_seconds
from invarlock_packs.suite.config import SuiteConfig
from invarlock_packs.suite.models import SuiteModel
from invarlock_packs.suite.run_layout import RunLayout
from invarlock_packs.suite.scenarios import Scenario

__all__ = ["CALIBRATION_TYPES", "ENTRY_POINT", "build_run_graph", "use_batch_edits"]

ENTRY_POINT: Final = "invarlock_packs.suite.task_work:run_task"
CALIBRATION_TYPES: Final = frozenset(
    {TaskType.SETUP_BASELINE, TaskType.CALIBRATION_RUN, TaskType.GENERATE_PRESET}
)
_LARGE_MODEL_GB: Final = 100.0


def use_batch_edits(config: SuiteConfig, profile: ModelProfile) -> bool:
    """``PACK_USE_BATCH_EDITS``: auto batches only without cleanup, never large or MoE models."""
    if config.batch_edits != "auto":
        return config.batch_edits == "true"
    return not config.cleanup_models and not profile.is_moe and profile.weights_gb < _LARGE_MODEL_GB


@attrs.define
class _ModelGraph:
    model: SuiteModel
    profile: ModelProfile
    planner: MemoryPlanner
    layout: RunLayout
    tasks: list[Task] = attrs.field(factory=list)

    def add(
        self,
        kind: TaskType,
        deps: Sequence[str],
        output: str | None,
        *,
        scenario: str = "",
        run: int = 0,
        repeat: int = 0,
        count: int = 1,
    ) -> str:
        suffix = "".join(
            (
                f".{scenario}" if scenario else "",
                f".run_{run}" if run else "",
                f".repeat_{repeat}" if repeat else "",
            )
        )
        params: dict[str, str | int] = {"type": kind.value, "model": self.model.slug}
        if scenario:
            params["scenario"] = scenario
        if run:
            params["run"] = run
        if repeat:
            params["repeat"] = repeat
        task = Task(
            id=f"{self.model.slug}.{kind.value}{suffix}",
            type=kind,
            model=self.model.slug,
            deps=tuple(deps),
            estimated_seconds=estimated_seconds(kind, self.profile.weights_gb, count),
            command=TaskCommand(entry_point=ENTRY_POINT, params=params),
            outputs=(output,) if output else (),
            labels={"scenario": scenario} if scenario else {},
        )
        self.tasks.append(self.planner.plan(task, self.profile))
        return task.id

    def relative(self, path: object) -> str:
        return str(path).removeprefix(str(self.layout.root) + "/")


_REPORT = "evaluation.report.json"
_META = "edit_metadata.json"


def _calibration(graph: _ModelGraph, config: SuiteConfig, setup: str) -> str:
    slug, layout = graph.model.slug, graph.layout
    reuse = bool(config.preset_dir or config.preset_file)
    runs = (
        []
        if reuse
        else [
            graph.add(
                TaskType.CALIBRATION_RUN,
                [setup],
                graph.relative(layout.calibration_dir(slug, i) / _REPORT),
                run=i,
            )
            for i in range(1, config.calibration_runs + 1)
        ]
    )
    return graph.add(TaskType.GENERATE_PRESET, runs or [setup], graph.relative(layout.preset(slug)))


def _repeats(
    graph: _ModelGraph, config: SuiteConfig, scenario: Scenario, deps: list[str]
) -> list[str]:
    """``--repeats N``: N more evaluations of the first edit scenario, outside the verdict's reports."""
    slug, layout = graph.model.slug, graph.layout
    return [
        graph.add(
            TaskType.EVALUATE_EDIT,
            deps,
            graph.relative(layout.repeat_dir(slug, scenario.id, k) / _REPORT),
            scenario=scenario.id,
            repeat=k,
        )
        for k in range(1, config.repeats + 1)
    ]


def _model_tasks(
    graph: _ModelGraph, config: SuiteConfig, scenarios: Sequence[Scenario]
) -> list[Task]:
    slug, layout = graph.model.slug, graph.layout
    setup = graph.add(
        TaskType.SETUP_BASELINE, [], graph.relative(layout.baseline_report_dir(slug) / _REPORT)
    )
    preset = _calibration(graph, config, setup)
    if config.mode == "calibrate-only":
        return graph.tasks
    edits = [s for s in scenarios if not s.is_error]
    creators: dict[str, str] = {}
    if edits and use_batch_edits(config, graph.profile):
        batch = graph.add(TaskType.CREATE_EDITS_BATCH, [setup], None, count=len(edits))
        creators = {s.id: batch for s in edits}
    for scenario in scenarios:
        error = scenario.is_error
        model_dir = layout.subject_model(slug, scenario.id, error=error)
        if scenario.id not in creators:
            kind = TaskType.CREATE_ERROR if error else TaskType.CREATE_EDIT
            creators[scenario.id] = graph.add(
                kind, [setup], graph.relative(model_dir / _META), scenario=scenario.id
            )
        evaluations = [
            graph.add(
                TaskType.EVALUATE_ERROR if error else TaskType.EVALUATE_EDIT,
                [creators[scenario.id], preset],
                graph.relative(layout.report_dir(slug, scenario.id, run, error=error) / _REPORT),
                scenario=scenario.id,
                run=0 if error else run,
            )
            for run in range(1, scenario.runs + 1)
        ]
        if edits and scenario is edits[0]:
            evaluations += _repeats(graph, config, scenario, [creators[scenario.id], preset])
        if config.cleanup_models:
            graph.add(TaskType.CLEANUP, evaluations, None, scenario=scenario.id)
    return graph.tasks


def build_run_graph(
    config: SuiteConfig,
    layout: RunLayout,
    models: Sequence[tuple[SuiteModel, ModelProfile]],
    scenarios: Sequence[Scenario],
    planner: MemoryPlanner,
) -> TaskGraph:
    """Every model's tasks, models in slot order."""
    tasks: list[Task] = []
    for model, profile in models:
        tasks += _model_tasks(_ModelGraph(model, profile, planner, layout), config, scenarios)
    return TaskGraph(tuple(tasks), name=f"suite-{config.suite}")
