"""``run_suite``: a whole validation suite into one run directory, then a signed, verified pack.

Steps: resolve the configuration; check the output directory, models, tuned parameters and disk
before writing anything; write the run's state (configuration, scenarios, models, tuned parameters,
revisions); build the task graph and run it with the scheduler (``--resume`` continues the queue);
compile the final verdict; write the analysis summary; build, sign and verify the pack.

Exit codes: 0 PASS and the pack verifies, 1 FAIL (or a pack that does not verify), 2 bad input,
3 internal error (the run stopped before finishing). ``--calibrate-only`` stops after the presets.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from invarlock_core.errors import EXIT_FAIL, EXIT_INTERNAL, EXIT_OK, UsageError
from invarlock_core.scheduling import (
    Device,
    MemoryPlanner,
    ModelProfile,
    RunSummary,
    SchedulingKnobs,
    TaskGraph,
    discover_devices,
    run_graph,
)
from invarlock_core.scheduling.warm_start import PRELOAD_ENV, WARM_ENV
from invarlock_packs.suite.analysis import write_determinism_repeats, write_optimization_summary
from invarlock_packs.suite.config import SuiteConfig, read_config, resolve_config, write_config
from invarlock_packs.suite.graph import ENTRY_POINT, build_run_graph
from invarlock_packs.suite.model_sources import hf_environment
from invarlock_packs.suite.models import (
    SuiteModel,
    apply_slot_overrides,
    read_models,
    suite_models,
    write_models,
)
from invarlock_packs.suite.packaging import PackOutcome, package_run
from invarlock_packs.suite.preflight import (
    check_disk,
    check_models,
    check_output_dir,
    model_weights_gb,
)
from invarlock_packs.suite.revisions import write_revisions
from invarlock_packs.suite.run_layout import RunLayout
from invarlock_packs.suite.scenarios import (
    Scenario,
    load_catalogue,
    read_scenarios,
    resolve_clean_edits,
    select_scenarios,
    write_scenarios,
)
from invarlock_packs.suite.task_work import WARM_IMPORTS
from invarlock_packs.suite.tuned import load_tuned_defaults

__all__ = ["SuiteResult", "run_suite"]

_FAST_IDLE_SLEEP: Final = 0.25
"""Idle poll of workers when ``WORKER_IDLE_SLEEP`` is not set (SQLite polls are cheap)."""
_DETERMINISM_ENV: Final[Mapping[str, Mapping[str, str]]] = {
    "throughput": {"NVIDIA_TF32_OVERRIDE": "1", "CUDNN_BENCHMARK": "1"},
    "strict": {
        "NVIDIA_TF32_OVERRIDE": "0",
        "CUDNN_BENCHMARK": "0",
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
    },
}


@attrs.frozen
class SuiteResult:
    """How a suite run ended."""

    out: Path
    exit_code: int
    verdict: str | None
    """``PASS`` / ``FAIL``; ``None`` when no verdict was compiled (``--calibrate-only``, a stopped run)."""
    tasks: Mapping[str, int]
    pack: Path | None = None
    signer_fingerprint: str | None = None
    key_generated: bool = False
    html: Path | None = None
    pack_verified: bool = False
    problems: tuple[str, ...] = ()


def _knobs(env: Mapping[str, str]) -> SchedulingKnobs:
    knobs = SchedulingKnobs.from_env(env)
    if not env.get("WORKER_IDLE_SLEEP"):
        knobs = attrs.evolve(knobs, worker_idle_sleep=_FAST_IDLE_SLEEP)
    return knobs


def _default_out(suite: str) -> Path:
    stamp = time.strftime("%Y%m%d_%H%M%S")
    return Path("evidence_pack_runs") / f"{suite}_{stamp}"


def _profiles(
    models: Sequence[SuiteModel], layout: RunLayout
) -> list[tuple[SuiteModel, ModelProfile]]:
    """Planner profiles: ``model_profile.json`` once the baseline is set up, else an estimate."""
    result = []
    for model in models:
        path = layout.model_profile(model.slug)
        profile = (
            ModelProfile.load(path)
            if path.is_file()
            else ModelProfile(model.slug, model_weights_gb(model))
        )
        result.append((model, profile))
    return result


def _task_env(
    config: SuiteConfig, layout: RunLayout, env: Mapping[str, str], devices: Sequence[Device]
) -> dict[str, str]:
    extra = dict(_DETERMINISM_ENV[config.determinism])
    if devices and all(d.kind == "cpu" for d in devices) and not env.get("OMP_NUM_THREADS"):
        # CPU slots share the cores: one slot's task must not spread over all of them.
        extra["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // len(devices)))
    extra.update(hf_environment(layout, env, net=config.net))
    extra["TOKENIZERS_PARALLELISM"] = "false"
    if config.warm_start and config.executor == "local":
        # Only local workers are forked: a Ray worker process is threaded and not ours to fork.
        extra.update(
            {WARM_ENV: "1", PRELOAD_ENV: ",".join((*WARM_IMPORTS, ENTRY_POINT.split(":")[0]))}
        )
    return extra


def _graph(
    config: SuiteConfig,
    layout: RunLayout,
    models: Sequence[SuiteModel],
    scenarios: Sequence[Scenario],
    knobs: SchedulingKnobs,
    env: Mapping[str, str],
) -> TaskGraph:
    devices = discover_devices(knobs, env)
    memory = knobs.gpu_memory_per_device_gb or min((d.total_gb for d in devices), default=80.0)
    planner = MemoryPlanner(knobs, device_memory_gb=memory or 80.0)
    graph = build_run_graph(config, layout, _profiles(models, layout), scenarios, planner)
    extra = _task_env(config, layout, env, devices)
    tasks = []
    for task in graph.tasks:
        assert task.command is not None
        command = attrs.evolve(task.command, env={**task.command.env, **extra})
        tasks.append(attrs.evolve(task, command=command))
    return TaskGraph(tuple(tasks), name=graph.name)


def _prepare(
    flags: Mapping[str, Any], env: Mapping[str, str], suite_file: Path | None
) -> tuple[SuiteConfig, RunLayout, tuple[SuiteModel, ...], tuple[Scenario, ...]]:
    """Resolve and check everything of a new run, then write its state (nothing before the checks)."""
    config = resolve_config(flags, env=env, suite_file=suite_file)
    out = Path(config.out) if config.out else _default_out(config.suite)
    config = attrs.evolve(config, out=str(out.resolve()))
    layout = RunLayout(Path(config.out))
    check_output_dir(layout.root, resume=False)
    tuned_path, tuned = load_tuned_defaults(config)
    selected = select_scenarios(
        load_catalogue(), config.suite, config.scenario_ids, errors=config.run_error_injection
    )
    if not selected:
        raise UsageError(f"suite {config.suite!r} selects no scenarios")
    scenarios = resolve_clean_edits(
        selected, tuned, clean_runs=config.clean_runs, stress_runs=config.stress_runs
    )
    models = apply_slot_overrides(suite_models(config.suite), env, config.models)
    check_models(models, layout, net=config.net)
    check_disk(config, layout, models, scenarios)
    write_config(layout.config, config)
    write_scenarios(layout.scenarios, scenarios)
    shutil.copyfile(tuned_path, layout.tuned_params)
    models = write_revisions(layout, models, env, net=config.net)
    write_models(layout.models, models)
    return config, layout, models, scenarios


def _resume_state(
    out: Path, flags: Mapping[str, Any]
) -> tuple[SuiteConfig, RunLayout, tuple[SuiteModel, ...], tuple[Scenario, ...]]:
    check_output_dir(out, resume=True)
    layout = RunLayout(out.resolve())
    config = read_config(layout.config)
    if flags.get("mode"):
        config = attrs.evolve(config, mode=flags["mode"])
        write_config(layout.config, config)
    return config, layout, read_models(layout.models), read_scenarios(layout.scenarios)


def _schedule(
    config: SuiteConfig,
    layout: RunLayout,
    models: Sequence[SuiteModel],
    scenarios: Sequence[Scenario],
    *,
    resume: bool,
    env: Mapping[str, str],
) -> RunSummary:
    from invarlock_core.scheduling import TaskQueue

    knobs = _knobs(env)
    if resume and TaskQueue.exists(layout.root):
        return run_graph(layout.root, executor=config.executor, knobs=knobs, resume=True)
    archived = layout.state / "calibrate_only.queue.sqlite3"
    if config.mode == "run-only" and not archived.exists():
        raise UsageError(f"--run-only needs a finished --calibrate-only run in {layout.root}")
    graph = _graph(config, layout, models, scenarios, knobs, env)
    return run_graph(layout.root, graph, executor=config.executor, knobs=knobs)


def _archive_calibration_queue(layout: RunLayout) -> None:
    """After ``--calibrate-only``, set its queue aside so ``--run-only`` queues the full graph."""
    for suffix in ("", "-wal", "-shm"):
        source = layout.state / f"queue.sqlite3{suffix}"
        if source.exists():
            os.replace(source, layout.state / f"calibrate_only.queue.sqlite3{suffix}")


def _verdict(layout: RunLayout, config: SuiteConfig) -> tuple[str, list[Path]]:
    from invarlock_packs.suite.verdict import compile_final_verdict, write_verdict_outputs

    verdict = compile_final_verdict(
        layout.root, informational_min_fraction=config.informational_min_fraction
    )
    return str(verdict.verdict), list(write_verdict_outputs(layout.root, verdict))


def _finish(
    config: SuiteConfig,
    layout: RunLayout,
    models: Sequence[SuiteModel],
    scenarios: Sequence[Scenario],
    summary: RunSummary,
    invocation: Sequence[str],
) -> SuiteResult:
    tasks = dict(summary.states)
    if summary.stopped:
        return SuiteResult(layout.root, EXIT_INTERNAL, None, tasks, problems=(summary.reason,))
    slugs = [m.slug for m in models]
    write_optimization_summary(layout, slugs)
    repeated = next((s for s in scenarios if not s.is_error), None)
    if config.repeats and repeated is not None:
        write_determinism_repeats(layout, slugs, repeated.id)
    verdict, outputs = _verdict(layout, config)
    code = EXIT_OK if verdict == "PASS" else EXIT_FAIL
    if not config.pack:
        return SuiteResult(layout.root, code, verdict, tasks)
    outcome: PackOutcome = package_run(config, layout, models, scenarios, outputs, invocation)
    verification = outcome.verification
    if not verification.ok:
        code = EXIT_FAIL
    return SuiteResult(
        layout.root,
        code,
        verdict,
        tasks,
        pack=outcome.built.path,
        signer_fingerprint=outcome.built.signing_key_fingerprint,
        key_generated=outcome.key_generated,
        html=outcome.built.html,
        pack_verified=verification.ok,
        problems=verification.problems,
    )


def run_suite(
    suite: str | None = None,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    suite_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    invocation: Sequence[str] | None = None,
    on_start: Callable[[Path], None] | None = None,
    **flags: Any,
) -> SuiteResult:
    """Run ``suite`` (or continue the run in ``out`` with ``resume=True``) and return the result.

    ``flags`` are :class:`~invarlock_packs.suite.config.SuiteConfig` fields (``models=``,
    ``scenario_ids=``, ``mode=``, ``pack=False`` ...); they override the suite file and the
    environment (``env``, default ``os.environ``). ``on_start`` is called with the run directory once
    its state is written, before any task runs (the CLI starts its progress view there).
    """
    environ = dict(os.environ if env is None else env)
    given = {**flags, "suite": suite, "out": str(out) if out is not None else None}
    if resume:
        if out is None:
            raise UsageError("--resume needs the run directory (--out)")
        config, layout, models, scenarios = _resume_state(Path(out), given)
    else:
        path = Path(suite_file) if suite_file is not None else None
        config, layout, models, scenarios = _prepare(given, environ, path)
    if on_start is not None:
        on_start(layout.root)
    summary = _schedule(config, layout, models, scenarios, resume=resume, env=environ)
    if config.mode == "calibrate-only" and not summary.stopped:
        _archive_calibration_queue(layout)
        code = summary.exit_code
        return SuiteResult(layout.root, code, None, dict(summary.states))
    argv = list(invocation) if invocation is not None else ["invarlock", *sys.argv[1:]]
    return _finish(config, layout, models, scenarios, summary, argv)
