"""What each task of a suite does, as library calls (the entry point the executor runs).

``run_task(params)`` reads the run's state (configuration, models, scenarios) from
``INVARLOCK_OUTPUT_DIR`` and performs one task:

* ``SETUP_BASELINE``: obtain the checkpoint (tiny build, local directory or the HF cache), store it
  under ``<slug>/models/baseline`` (``snapshot_copy`` / ``snapshot_symlink`` / ``save_pretrained``),
  write ``model_profile.json`` and the one baseline report whose per-window losses every later
  evaluation of this model reuses (:mod:`invarlock_packs.suite.baseline`);
* ``CALIBRATION_RUN``: one seeded noop evaluation; ``GENERATE_PRESET``: the run-scoped preset
  from those runs, or a copy of a reused one;
* ``CREATE_EDIT`` / ``CREATE_EDITS_BATCH`` / ``CREATE_ERROR``: write subject checkpoints labelled
  with their scenario; ``EVALUATE_EDIT`` / ``EVALUATE_ERROR``: the paired evaluation (a FAIL verdict
  is a result, not a task failure); ``CLEANUP``: delete the subject checkpoint.

Torch and transformers are imported inside the library calls only.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from invarlock_core.atomic import atomic_write_bytes, atomic_write_json
from invarlock_core.errors import InputError, UsageError
from invarlock_core.scheduling import TaskType
from invarlock_core.scheduling.warm_start import preload
from invarlock_packs.suite.baseline import evaluation_request, setup_baseline
from invarlock_packs.suite.config import SuiteConfig, read_config
from invarlock_packs.suite.faults import inject_fault
from invarlock_packs.suite.models import SuiteModel, read_models
from invarlock_packs.suite.presets import calibration_run, generate_preset
from invarlock_packs.suite.run_layout import RunLayout
from invarlock_packs.suite.scenarios import Scenario, read_scenarios

__all__ = ["WARM_IMPORTS", "TaskContext", "run_task"]

WARM_IMPORTS: Final = (
    "torch",
    "transformers",
    "safetensors.torch",
    # What a model's first from_pretrained imports (seconds of torch.distributed, dynamo, ...).
    "transformers.modeling_utils",
    "transformers.models.auto.modeling_auto",
    "transformers.masking_utils",
    "transformers.activations",
    "transformers.integrations.hub_kernels",
    "transformers.generation",
    "invarlock_core.evaluation",
    "invarlock_edits.edit_command",
    "invarlock_guards.calibration",
)
"""What every task needs imported: a warm worker imports it once; a cold task before its clock starts."""


@attrs.frozen
class TaskContext:
    """One task's view of the run."""

    layout: RunLayout
    config: SuiteConfig
    model: SuiteModel
    scenarios: tuple[Scenario, ...]
    scenario: Scenario | None
    run: int
    repeat: int = 0

    @classmethod
    def load(cls, out: Path, params: Mapping[str, Any]) -> TaskContext:
        layout = RunLayout(out)
        models = {m.slug: m for m in read_models(layout.models)}
        slug = str(params["model"])
        if slug not in models:
            raise InputError(f"model {slug!r} is not in {layout.models}")
        scenarios = read_scenarios(layout.scenarios)
        wanted = params.get("scenario")
        scenario = next((s for s in scenarios if s.id == wanted), None)
        if wanted is not None and scenario is None:
            raise InputError(f"scenario {wanted!r} is not in {layout.scenarios}")
        return cls(
            layout,
            read_config(layout.config),
            models[slug],
            scenarios,
            scenario,
            int(params.get("run", 1)),
            int(params.get("repeat", 0)),
        )

    def need_scenario(self) -> Scenario:
        if self.scenario is None:
            raise UsageError("this task needs a scenario")
        return self.scenario


def _create_subject(ctx: TaskContext, scenario: Scenario) -> None:
    from invarlock_core.editing import EditSpec
    from invarlock_core.plugins import get_registries
    from invarlock_edits.edit_command import apply_edit

    spec = EditSpec.parse(scenario.edit_template)
    apply_edit(
        get_registries().edits.get(spec.name),
        spec,
        baseline=ctx.layout.baseline_model(ctx.model.slug),
        out=ctx.layout.subject_model(ctx.model.slug, scenario.id, error=scenario.is_error),
        seed=0,
        overwrite=True,
        tuned_params=ctx.layout.tuned_params if scenario.is_clean else None,
        scenario_id=scenario.id,
        category=scenario.category,
    )


def _create(ctx: TaskContext) -> None:
    _create_subject(ctx, ctx.need_scenario())


def _create_batch(ctx: TaskContext) -> None:
    for scenario in ctx.scenarios:
        done = ctx.layout.subject_model(ctx.model.slug, scenario.id, error=False)
        if not scenario.is_error and not (done / "edit_metadata.json").is_file():
            _create_subject(ctx, scenario)


def _evaluate(ctx: TaskContext) -> None:
    from invarlock_core.evaluation import evaluate

    scenario = ctx.need_scenario()
    slug, layout = ctx.model.slug, ctx.layout
    request = evaluation_request(
        ctx.config,
        layout,
        slug,
        subject=layout.subject_model(slug, scenario.id, error=scenario.is_error),
        out=layout.repeat_dir(slug, scenario.id, ctx.repeat)
        if ctx.repeat
        else layout.report_dir(slug, scenario.id, ctx.run, error=scenario.is_error),
        preset=layout.preset(slug),
    )
    evaluate(request)  # a FAIL verdict is this scenario's result, not a failed task
    # The pack pairs each report with the subject's labels (scenario, category, artifact class).
    metadata = request.subject / "edit_metadata.json"
    if metadata.is_file():
        atomic_write_bytes(request.out / "edit_metadata.json", metadata.read_bytes())


def _cleanup(ctx: TaskContext) -> None:
    if not ctx.config.cleanup_models:
        return
    scenario = ctx.need_scenario()
    target = ctx.layout.subject_model(ctx.model.slug, scenario.id, error=scenario.is_error)
    shutil.rmtree(target, ignore_errors=True)


_HANDLERS: Mapping[TaskType, Callable[[TaskContext], None]] = {
    TaskType.SETUP_BASELINE: lambda ctx: setup_baseline(ctx.config, ctx.layout, ctx.model),
    TaskType.CALIBRATION_RUN: lambda ctx: calibration_run(
        ctx.config, ctx.layout, ctx.model.slug, ctx.run
    ),
    TaskType.GENERATE_PRESET: lambda ctx: generate_preset(ctx.config, ctx.layout, ctx.model.slug),
    TaskType.CREATE_EDIT: _create,
    TaskType.CREATE_EDITS_BATCH: _create_batch,
    TaskType.CREATE_ERROR: _create,
    TaskType.EVALUATE_EDIT: _evaluate,
    TaskType.EVALUATE_ERROR: _evaluate,
    TaskType.CLEANUP: _cleanup,
}


def _limit_threads() -> None:
    """Honour ``OMP_NUM_THREADS`` in a warm-started task too (torch read it before the fork)."""
    threads = os.environ.get("OMP_NUM_THREADS", "")
    torch = sys.modules.get("torch")
    if threads.isdigit() and int(threads) > 0 and torch is not None:
        torch.set_num_threads(int(threads))


def _record_seconds(out: Path, seconds: float) -> None:
    """``logs/task_seconds/<task id>.json``: the task's in-process compute time (for benchmarks)."""
    task_id = os.environ.get("INVARLOCK_TASK_ID")
    if task_id:
        atomic_write_json(
            out / "logs" / "task_seconds" / f"{task_id}.json",
            {
                "task": task_id,
                "seconds": seconds,
                "attempt": os.environ.get("INVARLOCK_TASK_ATTEMPT"),
            },
        )


def run_task(params: Mapping[str, Any]) -> int:
    """Entry point of every suite task (``invarlock_core.scheduling.entry``); 0 on success."""
    out = Path(os.environ.get("INVARLOCK_OUTPUT_DIR") or params.get("output_dir") or ".")
    kind = TaskType(str(params["type"]))
    inject_fault(kind)
    preload(",".join(WARM_IMPORTS))  # start-up, not compute: done already in a warm worker
    _limit_threads()
    started = time.perf_counter()
    _HANDLERS[kind](TaskContext.load(out, params))
    _record_seconds(out, time.perf_counter() - started)
    return 0
