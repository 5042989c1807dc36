"""Paired evaluation of a subject checkpoint against its baseline: the library behind ``invarlock evaluate``.

:func:`evaluate` validates the inputs, loads the dataset through its provider plugin, plans
deterministic windows with the baseline's tokenizer, scores baseline and subject on identical
windows, runs the guard chain (baseline state once, subject validated against it), judges the
primary metric with :func:`invarlock_core.evaluation.verdict.judge` and writes
``evaluation.report.json`` (schema-validated), ``evaluation_report.md`` and
``evaluate_timing.json`` atomically into ``out``. When the subject's edit metadata asks for a
probe sidecar (``detection.probe``), the named guard writes it beside the report
(:mod:`invarlock_core.evaluation.probe_sidecars`).

Models are held one at a time: the baseline is scored and measured by the guards, released, then
the subject is loaded. Expected failures raise :class:`~invarlock_core.errors.InvarlockError`
subclasses; a subject that produces NaN/Inf is a FAIL verdict, never an exception.
"""

from __future__ import annotations

import gc
import json
import math
import platform
import sys
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs
import numpy as np
import numpy.typing as npt

from invarlock_core.atomic import staged_directory
from invarlock_core.canonical import canonical_digest, prefixed
from invarlock_core.datasets.environment import resolve_dataset_options
from invarlock_core.editing import EditSpec
from invarlock_core.errors import (
    EXIT_FAIL,
    EXIT_OK,
    EvaluationError,
    InputError,
    InvarlockError,
    ModelLoadError,
    UsageError,
)
from invarlock_core.evaluation.finiteness import nonfinite_counts
from invarlock_core.evaluation.policy import (
    TIERS,
    Policy,
    Preset,
    Profile,
    build_policy,
    load_preset,
    load_profile,
)
from invarlock_core.evaluation.probe_sidecars import (
    ChainRun,
    remove_stale_probes,
    requested_probe,
    run_probe,
)
from invarlock_core.evaluation.unchanged_tensors import unchanged_parameters
from invarlock_core.evaluation.verdict import WindowScore, judge
from invarlock_core.evaluation.windows import WindowPlan, plan_windows, tokenize_stream
from invarlock_core.guarding import (
    DEFAULT_GUARD_ORDER,
    GuardChain,
    GuardContext,
    GuardResult,
    ModelUnderTest,
    Violation,
)
from invarlock_core.json_files import read_json
from invarlock_core.report.document import (
    guard_outcomes,
    guard_result_json,
    load_report,
    window_scores,
    write_report,
)
from invarlock_core.schema_validation import validate_instance

if TYPE_CHECKING:
    from invarlock_core.plugins import Registries

__all__ = ["EDIT_METADATA_NAME", "EvaluationOutcome", "EvaluationRequest", "evaluate"]

EDIT_METADATA_NAME = "edit_metadata.json"
EDIT_METADATA_SCHEMA = "invarlock/evidence-pack-edit-metadata-v1"
_CALIBRATION_WINDOWS = 8
_MAX_TENSORS_NAMED = 10


def _optional_path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


@attrs.frozen
class EvaluationRequest:
    """Everything ``invarlock evaluate`` accepts; ``None`` means "the profile's default"."""

    baseline: Path = attrs.field(converter=Path)
    out: Path = attrs.field(converter=Path)
    subject: Path | None = attrs.field(default=None, converter=_optional_path)
    edit: str | None = None
    dataset: str | None = None
    """Dataset provider; ``None``: ``INVARLOCK_DATASET`` or ``sample``."""
    data_path: str | None = None
    text_field: str | None = None
    max_samples: int | None = None
    dataset_name: str | None = None
    dataset_config: str | None = None
    split: str | None = None
    seq_len: int | None = None
    stride: int | None = None
    preview_windows: int | None = None
    final_windows: int | None = None
    batch_size: int | None = None
    tier: str | None = None
    """``None``: the preset's tier, else ``balanced``."""
    profile: str = "dev"
    device: str = "auto"
    dtype: str = "auto"
    preset: Path | None = attrs.field(default=None, converter=_optional_path)
    guards: tuple[str, ...] | None = None
    """``None``: the preset's order, else the default chain (guards not installed are skipped)."""
    seed: int = 0
    allow_network: bool = False
    trust_remote_code: bool = False
    bootstrap_replicates: int | None = None
    alpha: float | None = None
    acceptance_range: tuple[float, float] | None = None
    drift_band: tuple[float, float] | None = None
    baseline_report: Path | None = attrs.field(default=None, converter=_optional_path)
    """An earlier report for the same baseline and windows: its baseline NLLs are reused."""
    assurance: Literal["gate", "off"] = "gate"
    """``off``: load-path check; the exit code is 0 whenever the report was written."""


@attrs.frozen
class EvaluationOutcome:
    """The written report and the process exit code it implies."""

    report: dict[str, Any]
    report_path: Path
    markdown_path: Path
    exit_code: int

    @property
    def verdict(self) -> str:
        return str(self.report["verdict"])


@attrs.frozen
class _Settings:
    seq_len: int
    stride: int
    preview: int
    final: int
    batch: int


def _settings(request: EvaluationRequest, profile: Profile, tier: str) -> _Settings:
    tier_windows = TIERS[tier].windows if profile.name != "dev" else 0
    seq_len = request.seq_len if request.seq_len is not None else profile.seq_len
    stride = request.stride if request.stride is not None else request.seq_len
    settings = _Settings(
        seq_len=seq_len,
        stride=stride if stride is not None else profile.stride,
        preview=(
            request.preview_windows
            if request.preview_windows is not None
            else max(profile.preview_windows, tier_windows)
        ),
        final=(
            request.final_windows
            if request.final_windows is not None
            else max(profile.final_windows, tier_windows)
        ),
        batch=request.batch_size if request.batch_size is not None else profile.batch,
    )
    floors = profile.floors
    for flag, value, floor in (
        ("--preview-windows", settings.preview, floors.preview_windows),
        ("--final-windows", settings.final, floors.final_windows),
    ):
        if value < floor:
            raise UsageError(
                f"{flag} {value} is below the {profile.name} profile's floor of {floor} "
                "(use --profile dev for quick runs)"
            )
    if settings.seq_len < 2 or settings.stride < 1 or settings.batch < 1:
        raise UsageError("--seq-len must be >= 2, --stride and --batch-size >= 1")
    return settings


def _check_request(request: EvaluationRequest) -> None:
    if (request.subject is None) == (request.edit is None):
        raise UsageError("give exactly one of --subject DIR or --edit SPEC")
    if request.out.exists() and not request.out.is_dir():
        raise UsageError(f"--out {request.out} exists and is not a directory")
    if request.assurance not in ("gate", "off"):
        raise UsageError(f"--assurance {request.assurance!r}: expected gate or off")


def _max_positions(config: Any) -> int | None:
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _nonfinite_tensors(model: Any) -> dict[str, int]:
    return nonfinite_counts([*model.named_parameters(), *model.named_buffers()])


def _calibration(plan: WindowPlan, device: str) -> list[Any]:
    torch = sys.modules["torch"]
    source = plan.preview_ids if plan.preview_ids.shape[0] else plan.final_ids
    rows = source[:_CALIBRATION_WINDOWS]
    return [torch.from_numpy(np.ascontiguousarray(row[None, :])).to(device) for row in rows]


def _read_edit_metadata(subject: Path) -> dict[str, Any] | None:
    file = subject / EDIT_METADATA_NAME
    if not file.is_file():
        return None
    data = read_json(file, what="edit metadata")
    validate_instance(data, "edit-metadata", what=str(file))
    return dict(data)


def _make_subject(request: EvaluationRequest, registries: Registries) -> tuple[Path, dict[str, Any] | None]:
    if request.subject is not None:
        return request.subject, _read_edit_metadata(request.subject)
    spec = EditSpec.parse(str(request.edit))
    edit = registries.edits.get(spec.name)
    target = request.out / "subject"
    with staged_directory(target, overwrite=True) as stage:
        metadata = {
            # The published envelope, for plugins that return bare metadata.
            "schema": EDIT_METADATA_SCHEMA,
            "scenario_id": str(spec),
            "artifact_class": edit.artifact_class,
            "edit_type": spec.name,
            **edit.apply(spec, baseline=request.baseline, out=stage, seed=request.seed),
        }
        if not (stage / EDIT_METADATA_NAME).exists():
            (stage / EDIT_METADATA_NAME).write_text(
                json.dumps(metadata, sort_keys=True, indent=2, allow_nan=False) + "\n",
                encoding="utf-8",
            )
    return target, _read_edit_metadata(target) or metadata


def _guard_order(request: EvaluationRequest, preset: Preset | None) -> tuple[tuple[str, ...], bool]:
    if request.guards is not None:
        return request.guards, True
    if preset is not None and preset.guard_order is not None:
        return preset.guard_order, True
    return DEFAULT_GUARD_ORDER, False


def _crashed(name: str, exc: BaseException, seconds: float) -> GuardResult:
    message = f"guard raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return GuardResult(
        name=name,
        passed=False,
        severity="fail",
        violations=(Violation(target="guard", message=message.rstrip(": ")),),
        seconds=seconds,
    )


class _Guards:
    """The guard chain of one evaluation: baseline states first, subject validation later."""

    def __init__(self, request: EvaluationRequest, registries: Registries, preset: Preset | None):
        order, explicit = _guard_order(request, preset)
        installed = registries.guards.names()
        if explicit:
            self.skipped: tuple[str, ...] = ()
        else:
            self.skipped = tuple(dict.fromkeys(n for n in order if n not in registries.guards))
            order = tuple(n for n in order if n in registries.guards)
        self.chain = GuardChain(registries.guards, order)
        self.installed = tuple(installed)
        options = preset.guard_options if preset is not None else {}
        self.contexts = {
            name: GuardContext(tier=request.tier or "balanced", options=dict(options.get(name, {})), seed=request.seed)
            for name in self.chain.order
        }
        self.prepare_seconds = 0.0
        self.crashed: set[str] = set()
        """Guards that raised on the subject (their recorded result is a synthetic FAIL)."""

    def prepare(self, baseline: ModelUnderTest) -> None:
        for name in self.chain.order:
            start = time.perf_counter()
            try:
                self.chain.baseline_state(name, baseline, self.contexts[name])
            except InvarlockError:
                raise
            except Exception as exc:
                raise EvaluationError(
                    f"guard {name} failed while measuring the baseline: {type(exc).__name__}: {exc}"
                ) from exc
            self.prepare_seconds += time.perf_counter() - start

    def validate(self, baseline: ModelUnderTest, subject: ModelUnderTest) -> list[GuardResult]:
        results = []
        for name in self.chain.order:
            context = self.contexts[name]
            state = self.chain.baseline_state(name, baseline, context)
            start = time.perf_counter()
            try:
                result = self.chain.registry.get(name).validate(subject, state, context)
            except InvarlockError:
                raise
            except Exception as exc:  # a crash on a damaged subject is a FAIL, not a crash
                result = _crashed(name, exc, 0.0)
                self.crashed.add(name)
            results.append(attrs.evolve(result, seconds=time.perf_counter() - start))
        return results

    def describe(self) -> dict[str, Any]:
        note = None
        if not self.installed:
            note = "no guard plugins are installed: only the primary metric was checked"
        elif self.skipped:
            note = f"default guards not installed and skipped: {', '.join(self.skipped)}"
        return {
            "order": list(self.chain.order),
            "installed": list(self.installed),
            "skipped": list(self.skipped),
            "note": note,
            "baseline_prepare_calls": self.chain.prepare_calls,
        }


def _probe(
    out: Path,
    edit_metadata: dict[str, Any] | None,
    guards: _Guards,
    baseline: ModelUnderTest,
    subject: ModelUnderTest,
    results: Sequence[GuardResult],
) -> dict[str, Any] | None:
    """The probe sidecar the edit metadata asks for, written into ``out``: the report's record."""
    wanted = requested_probe(edit_metadata)
    if wanted is None:
        return None
    run = ChainRun(
        chain=guards.chain,
        contexts=guards.contexts,
        baseline=baseline,
        subject=subject,
        results=dict(zip(guards.chain.order, results)),
        crashed=frozenset(guards.crashed),
    )
    return run_probe(wanted, run, out=out)


def _environment(device: str, dtype: str) -> dict[str, Any]:
    import importlib.metadata

    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    torch = sys.modules.get("torch")
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "invarlock_core": version("invarlock-core"),
        "numpy": np.__version__,
        "torch": getattr(torch, "__version__", None),
        "transformers": version("transformers"),
        "device": device,
        "dtype": dtype,
        "cpu_threads": int(torch.get_num_threads()) if torch is not None else None,
        "cuda": getattr(getattr(torch, "version", None), "cuda", None),
    }


def _scores(
    plan_windows_: Sequence[Any],
    baseline: npt.NDArray[np.float64],
    subject: npt.NDArray[np.float64],
    tokens: int,
) -> list[WindowScore]:
    return [
        WindowScore(
            id=w.id,
            tokens=tokens,
            baseline_nll=float(b),
            subject_nll=float(s) if math.isfinite(float(s)) else None,
        )
        for w, b, s in zip(plan_windows_, baseline, subject)
    ]


def _score(
    mut: ModelUnderTest, plan: WindowPlan, device: str, batch: int, guards: _Guards
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float]:
    """Preview and final window NLLs of ``mut``, and the seconds the guards' forward observers
    spent inside these passes (guard time, not scoring time)."""
    from invarlock_core.evaluation.scoring import score_windows

    observers = guards.chain.observers(mut, guards.contexts)
    try:
        preview = score_windows(
            mut.model, plan.preview_ids, device=device, batch=batch, label=f"{mut.role} preview", observers=observers
        )
        final = score_windows(
            mut.model, plan.final_ids, device=device, batch=batch, label=f"{mut.role} final", observers=observers
        )
    finally:
        for observer in observers:
            observer.finish()
    return preview, final, sum(observer.seconds for observer in observers)


def _under_test(role: Literal["baseline", "subject"], loaded: Any, calibration: list[Any]) -> ModelUnderTest:
    return ModelUnderTest(
        role=role,
        model=loaded.model,
        checkpoint=loaded.path,
        digest=loaded.digest,
        calibration=calibration,
        device=loaded.device,
    )


def _checkpoint_info(loaded: Any) -> dict[str, Any]:
    return {
        "path": str(loaded.path),
        "digest": loaded.digest,
        "files": loaded.files,
        "dtype": loaded.dtype,
        "revision": loaded.revision,
        "model_type": getattr(loaded.config, "model_type", None),
    }


def _reused_baseline(
    request: EvaluationRequest, digest: str, plan: WindowPlan
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
    if request.baseline_report is None:
        return None
    earlier = load_report(request.baseline_report)
    if earlier.get("baseline", {}).get("digest") != digest:
        raise InputError(
            f"--baseline-report {request.baseline_report} was made for a different baseline checkpoint"
        )
    if earlier.get("windows", {}).get("digest") != plan.digest:
        raise InputError(
            f"--baseline-report {request.baseline_report} used different evaluation windows "
            "(dataset, --seq-len, --stride, window counts and --seed must match)"
        )
    recorded = earlier["primary_metric"]["per_window"]
    final = np.array([w.baseline_nll for w in window_scores(recorded["final"])], dtype=np.float64)
    preview = np.array([w.baseline_nll for w in window_scores(recorded["preview"])], dtype=np.float64)
    return preview, final


def evaluate(request: EvaluationRequest, *, registries: Registries | None = None) -> EvaluationOutcome:
    """Run the paired evaluation and write the report into ``request.out``."""
    started = time.perf_counter()
    timings: dict[str, Any] = {}
    _check_request(request)
    from invarlock_core.models import (
        LoadedModel,
        check_tokenizers_match,
        load_model,
        resolve_device,
        validate_checkpoint_dir,
    )

    if registries is None:
        from invarlock_core.plugins import get_registries

        registries = get_registries()
    profile = load_profile(request.profile)
    preset = load_preset(request.preset) if request.preset is not None else None
    policy: Policy = build_policy(
        tier=request.tier,
        profile=profile,
        preset=preset,
        acceptance_range=request.acceptance_range,
        drift_band=request.drift_band,
        replicates=request.bootstrap_replicates,
        alpha=request.alpha,
        seed=request.seed,
    )
    settings = _settings(request, profile, policy.tier)
    guards = _Guards(attrs.evolve(request, tier=policy.tier), registries, preset)
    provider_name, options = resolve_dataset_options(
        request.dataset,
        {
            "data_path": request.data_path,
            "text_field": request.text_field,
            "max_samples": request.max_samples,
            "name": request.dataset_name,
            "config": request.dataset_config,
            "split": request.split,
            "allow_network": request.allow_network,
            "trust_remote_code": request.trust_remote_code,
        },
    )
    provider = registries.datasets.get(provider_name)
    validate_checkpoint_dir(request.baseline)
    if request.subject is not None:
        validate_checkpoint_dir(request.subject)
    device = resolve_device(request.device)
    request.out.mkdir(parents=True, exist_ok=True)

    mark = time.perf_counter()
    texts = provider.load(options)
    timings["dataset_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    subject_path, edit_metadata = _make_subject(request, registries)
    timings["edit_s"] = time.perf_counter() - mark if request.edit else 0.0

    def load(path: Path) -> LoadedModel:
        return load_model(
            path,
            device=device,
            dtype=request.dtype,
            trust_remote_code=request.trust_remote_code,
            allow_network=request.allow_network,
        )

    mark = time.perf_counter()
    baseline = load(request.baseline)
    timings["baseline"] = {"load_s": time.perf_counter() - mark}
    if baseline.tokenizer is None:
        raise ModelLoadError(f"{request.baseline} has no tokenizer files (needed to plan windows)")
    limit = _max_positions(baseline.config)
    if limit is not None and settings.seq_len > limit:
        raise UsageError(f"--seq-len {settings.seq_len} exceeds the model's {limit} positions")

    mark = time.perf_counter()
    stream = tokenize_stream(baseline.tokenizer, texts.texts)
    plan = plan_windows(
        stream,
        seq_len=settings.seq_len,
        stride=settings.stride,
        preview=settings.preview,
        final=settings.final,
        seed=request.seed,
    )
    timings["windows_s"] = time.perf_counter() - mark
    scored = settings.seq_len - 1
    if scored * settings.final < profile.floors.tokens:
        raise UsageError(
            f"{settings.final} final windows score {scored * settings.final} tokens, below the "
            f"{profile.name} profile's floor of {profile.floors.tokens}"
        )

    calibration = _calibration(plan, device)
    baseline_mut = _under_test("baseline", baseline, calibration)
    mark = time.perf_counter()
    reused = _reused_baseline(request, baseline.digest, plan)
    if reused is None:
        base_preview, base_final, observed = _score(baseline_mut, plan, device, settings.batch, guards)
    else:
        (base_preview, base_final), observed = reused, 0.0
    timings["baseline"]["eval_s"] = time.perf_counter() - mark - observed
    timings["baseline"]["reused_report"] = reused is not None
    if not (np.all(np.isfinite(base_preview)) and np.all(np.isfinite(base_final))):
        raise InputError(
            f"the baseline {request.baseline} produces non-finite losses: it cannot serve as a reference"
        )
    mark = time.perf_counter()
    guards.prepare(baseline_mut)
    timings["baseline"]["guards_prepare_s"] = time.perf_counter() - mark + observed
    baseline_info = _checkpoint_info(baseline)
    tokenizer = baseline.tokenizer
    baseline_model = weakref.ref(baseline.model)
    baseline_mut.model = None
    del baseline
    if baseline_model() is not None:
        # Only a reference cycle keeps the baseline alive: collect it before the subject loads,
        # so one model at a time is in memory. (A full collection costs ~0.2 s: skip it otherwise.)
        gc.collect()

    mark = time.perf_counter()
    subject = load(subject_path)
    timings["subject"] = {"load_s": time.perf_counter() - mark}
    tokenizer_digest = check_tokenizers_match(tokenizer, subject.tokenizer)
    nonfinite = _nonfinite_tensors(subject.model)
    bad_names, bad_count = list(nonfinite)[:_MAX_TENSORS_NAMED], len(nonfinite)

    subject_mut = _under_test("subject", subject, calibration)
    subject_mut.nonfinite = nonfinite
    mark = time.perf_counter()
    if guards.chain.order:  # only guards use it: its time is guard time
        subject_mut.unchanged = unchanged_parameters(
            subject.model,
            baseline_mut.checkpoint,
            subject.path,
            file_digests=(baseline_info["files"], subject.files),
        )
    compared = time.perf_counter() - mark
    mark = time.perf_counter()
    subj_preview, subj_final, observed = _score(subject_mut, plan, device, settings.batch, guards)
    timings["subject"]["eval_s"] = time.perf_counter() - mark - observed
    mark = time.perf_counter()
    guard_results = guards.validate(baseline_mut, subject_mut)
    timings["subject"]["guards_validate_s"] = time.perf_counter() - mark + observed + compared
    mark = time.perf_counter()
    probe = _probe(request.out, edit_metadata, guards, baseline_mut, subject_mut, guard_results)
    timings["probe_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    final_scores = _scores(plan.final, base_final, subj_final, scored)
    preview_scores = _scores(plan.preview, base_preview, subj_preview, scored)
    policy_json = policy.to_json()
    guards_json = [guard_result_json(r) for r in guard_results]
    judgement = judge(
        final=final_scores,
        preview=preview_scores,
        policy=policy_json,
        guards=guard_outcomes(guards_json),
        nonfinite_tensors=bad_names,
        nonfinite_tensor_count=bad_count,
    )
    timings["statistics_s"] = time.perf_counter() - mark

    label = "custom"
    if edit_metadata is not None:
        label = str(
            next(
                (edit_metadata[k] for k in ("edit_spec", "edit_type", "edit", "name") if edit_metadata.get(k)),
                "custom",
            )
        )
    report: dict[str, Any] = {
        "schema_version": 1,
        "schema": "invarlock/evaluation-report-v1",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "verdict": judgement.verdict,
        "reasons": list(judgement.reasons),
        "warnings": list(judgement.warnings),
        "primary_metric": {
            **judgement.primary_metric,
            "per_window": {
                "final": [attrs.asdict(s) for s in final_scores],
                "preview": [attrs.asdict(s) for s in preview_scores],
            },
        },
        "guards": guards_json,
        "guard_chain": guards.describe(),
        "validation": judgement.validation,
        "baseline": baseline_info,
        "subject": {
            **_checkpoint_info(subject),
            "label": label,
            "edit": edit_metadata,
            "edit_spec": request.edit,
            "nonfinite_tensors": bad_names,
            "nonfinite_tensor_count": bad_count,
        },
        "tokenizer": {"fingerprint": tokenizer_digest},
        "dataset": {
            "provider": texts.provider,
            "source": texts.source,
            "license": texts.license,
            "revision": texts.revision,
            "texts": len(texts.texts),
            "digest": prefixed(canonical_digest(list(texts.texts))),
            "split": options.split if texts.provider in ("hf_text", "wikitext2") else None,
        },
        "windows": {**plan.describe(), "digest": plan.digest, "batch": settings.batch},
        "policy": policy_json,
        "preset": (
            {"path": preset.path, "digest": preset.digest, "provenance": dict(preset.provenance)}
            if preset is not None
            else None
        ),
        "probe": probe,
        "timings": timings,
        "environment": _environment(device, subject.dtype),
    }
    del subject, subject_mut
    timings["total_s"] = time.perf_counter() - started
    written = probe["file"] if probe is not None and probe["status"] == "written" else None
    remove_stale_probes(request.out, keep=written)
    report_path, markdown_path = write_report(report, request.out)
    if request.assurance == "off":
        code = EXIT_OK
    else:
        code = EXIT_OK if judgement.verdict == "PASS" else EXIT_FAIL
    return EvaluationOutcome(report=report, report_path=report_path, markdown_path=markdown_path, exit_code=code)
