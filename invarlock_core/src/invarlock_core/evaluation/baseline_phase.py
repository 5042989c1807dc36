"""The baseline phase: load the dataset and the baseline once, plan the windows, score them,
let every guard measure the baseline, then release the model.

The result, a :class:`BaselineState`, holds everything a subject is compared with: the scored
windows, the window plan and calibration batches, the guards' cached baseline states and the
digests that identify it. It stays in memory for any number of subjects
(:func:`invarlock_core.evaluation.run.evaluate_many`); every report written from it records the
baseline's numbers and digests, so a later run can reuse them with ``--baseline-report``.
"""

from __future__ import annotations

import gc
import sys
import weakref
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import numpy.typing as npt

from invarlock_core.canonical import canonical_digest, prefixed
from invarlock_core.datasets.provider import DatasetTexts
from invarlock_core.errors import InputError, ModelLoadError, UsageError
from invarlock_core.evaluation.baseline_reuse import reused_baseline
from invarlock_core.evaluation.loading import checkpoint_record, load_checkpoint, under_test
from invarlock_core.evaluation.passes import score_plan
from invarlock_core.evaluation.timing import Stopwatch
from invarlock_core.evaluation.windows import WindowPlan, plan_windows, tokenize_stream
from invarlock_core.guarding import ModelUnderTest
from invarlock_core.report.sections import CheckpointRecord, DatasetRecord

if TYPE_CHECKING:
    from invarlock_core.evaluation.inputs import ResolvedInputs
    from invarlock_core.models import LoadedModel

__all__ = ["BaselineState", "baseline_phase"]

_CALIBRATION_WINDOWS = 8


@attrs.frozen(eq=False)
class BaselineState:
    """A measured baseline, ready to be compared with any number of subjects."""

    checkpoint: CheckpointRecord
    under_test: ModelUnderTest
    """The baseline as the guards measured it; its model is released (their states are cached)."""
    tokenizer: Any
    plan: WindowPlan
    calibration: list[Any]
    preview_nll: npt.NDArray[np.float64]
    final_nll: npt.NDArray[np.float64]
    dataset: DatasetRecord
    timings: Stopwatch
    """Dataset, window and baseline timings; ``since_start`` is the phase's duration."""
    seconds: float

    @property
    def digest(self) -> str:
        return self.checkpoint.digest

    @property
    def windows_digest(self) -> str:
        return self.plan.digest


def _max_positions(config: Any) -> int | None:
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _calibration(plan: WindowPlan, device: str) -> list[Any]:
    torch = sys.modules["torch"]
    source = plan.preview_ids if plan.preview_ids.shape[0] else plan.final_ids
    rows = source[:_CALIBRATION_WINDOWS]
    return [torch.from_numpy(np.ascontiguousarray(row[None, :])).to(device) for row in rows]


def _dataset_record(inputs: ResolvedInputs, texts: DatasetTexts) -> DatasetRecord:
    return DatasetRecord(
        provider=texts.provider,
        source=texts.source,
        license=texts.license,
        revision=texts.revision,
        texts=len(texts.texts),
        digest=prefixed(canonical_digest(list(texts.texts))),
        split=inputs.dataset_options.split if texts.provider in ("hf_text", "wikitext2") else None,
    )


def _plan(inputs: ResolvedInputs, loaded: LoadedModel, texts: DatasetTexts) -> WindowPlan:
    settings, profile = inputs.settings, inputs.profile
    if loaded.tokenizer is None:
        raise ModelLoadError(f"{inputs.request.baseline} has no tokenizer files (needed to plan windows)")
    limit = _max_positions(loaded.config)
    if limit is not None and settings.seq_len > limit:
        raise UsageError(f"--seq-len {settings.seq_len} exceeds the model's {limit} positions")
    stream = tokenize_stream(loaded.tokenizer, texts.texts)
    plan = plan_windows(
        stream,
        seq_len=settings.seq_len,
        stride=settings.stride,
        preview=settings.preview,
        final=settings.final,
        seed=inputs.request.seed,
    )
    scored = settings.seq_len - 1
    if scored * settings.final < profile.floors.tokens:
        raise UsageError(
            f"{settings.final} final windows score {scored * settings.final} tokens, below the "
            f"{profile.name} profile's floor of {profile.floors.tokens}"
        )
    return plan


def _release(mut: ModelUnderTest, loaded: LoadedModel) -> None:
    """Drop the baseline model so that one model at a time is in memory."""
    model = weakref.ref(loaded.model)
    mut.model = None
    loaded.model = None
    if model() is not None:
        # Only a reference cycle keeps the baseline alive: collect it before the subject loads.
        # (A full collection costs ~0.2 s: skip it otherwise.)
        gc.collect()


def baseline_phase(inputs: ResolvedInputs) -> BaselineState:
    """Measure the baseline once: windows, scores (or an earlier report's), guard states."""
    clock = Stopwatch()
    with clock.measure("dataset_s"):
        texts = inputs.provider.load(inputs.dataset_options)
    with clock.measure("baseline", "load_s"):
        loaded = load_checkpoint(inputs, inputs.request.baseline)
    with clock.measure("windows_s"):
        plan = _plan(inputs, loaded, texts)
    calibration = _calibration(plan, inputs.device)
    mut = under_test("baseline", loaded, calibration)
    with clock.measure("baseline", "eval_s") as scoring:
        reused = reused_baseline(inputs, mut, plan)
        if reused is None:
            preview, final, observed = score_plan(mut, plan, inputs.device, inputs.settings.batch, inputs.guards)
        else:
            (preview, final), observed = reused, 0.0
        scoring.move(observed)
    clock.set("baseline", "reused_report", value=reused is not None)
    if not (np.all(np.isfinite(preview)) and np.all(np.isfinite(final))):
        raise InputError(
            f"the baseline {inputs.request.baseline} produces non-finite losses: it cannot serve as a reference"
        )
    with clock.measure("baseline", "guards_prepare_s") as preparing:
        inputs.guards.prepare(mut)
        preparing.shift += observed
    state = BaselineState(
        checkpoint=checkpoint_record(loaded),
        under_test=mut,
        tokenizer=loaded.tokenizer,
        plan=plan,
        calibration=calibration,
        preview_nll=preview,
        final_nll=final,
        dataset=_dataset_record(inputs, texts),
        timings=clock,
        seconds=clock.since_start(),
    )
    _release(mut, loaded)
    return state
