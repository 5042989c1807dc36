"""Helpers shared by the guard tests: loaded tiny models, calibration windows and weight damage."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

from invarlock_core.evaluation.windows import plan_windows, tokenize_stream
from invarlock_core.families import classify
from invarlock_core.guarding import GuardContext, GuardResult, ModelUnderTest
from invarlock_core.models import LoadedModel, load_model
from invarlock_core.testing import sample_text
from invarlock_guards.plugin import builtin_guards

ALL_GUARDS = ("invariants", "spectral", "rmt", "variance")


@attrs.define(eq=False)
class Loaded:
    """A tiny model loaded once per session, with 8 calibration windows."""

    arch: str
    loaded: LoadedModel
    calibration: list[Any]
    states: dict[tuple[str, str, int], Any] = attrs.field(factory=dict)

    def baseline(self) -> ModelUnderTest:
        return ModelUnderTest(
            "baseline", self.loaded.model, self.loaded.path, self.loaded.digest, self.calibration
        )

    def subject(self, model: Any = None) -> ModelUnderTest:
        return ModelUnderTest(
            "subject",
            self.loaded.model if model is None else model,
            self.loaded.path,
            "subject",
            self.calibration,
        )


def load_for_guards(path: Path, arch: str, *, windows: int = 8, seq_len: int = 64) -> Loaded:
    loaded = load_model(path, device="cpu", causal_lm=arch != "bert")
    stream = tokenize_stream(loaded.tokenizer, [sample_text()])
    plan = plan_windows(stream, seq_len=seq_len, preview=windows, final=1, seed=0)
    calibration = [torch.from_numpy(row.copy())[None, :] for row in plan.preview_ids]
    return Loaded(arch, loaded, calibration)


_GUARDS = {guard.name: guard for guard in builtin_guards()}


def run_guards(
    model: Loaded,
    subject: Any = None,
    *,
    names: tuple[str, ...] = ALL_GUARDS,
    tier: str = "balanced",
    seed: int = 0,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, GuardResult]:
    """Run guards on ``subject`` (a torch module; ``None``: the baseline itself) vs the baseline."""
    results = {}
    subject_mut = model.subject(subject)
    for name in names:
        guard = _GUARDS[name]
        context = GuardContext(tier=tier, options=dict((options or {}).get(name, {})), seed=seed)
        key = (name, tier, seed)
        if options or key not in model.states:
            state = guard.prepare(model.baseline(), context)
            if options:
                results[name] = guard.validate(subject_mut, state, context)
                continue
            model.states[key] = state
        results[name] = guard.validate(subject_mut, model.states[key], context)
    return results


def failed(results: Mapping[str, GuardResult]) -> set[str]:
    return {name for name, result in results.items() if not result.passed}


def matrices(
    model: Any, families: tuple[str, ...] = ("ffn", "expert_ffn")
) -> dict[str, torch.nn.Parameter]:
    return {
        name: p
        for name, p in model.named_parameters()
        if p.ndim >= 2 and classify(name) in families
    }


def damaged(model: Any, damage: Callable[[Any], None]) -> Any:
    """A deep copy of ``model`` with ``damage`` applied under ``no_grad``."""
    copied = copy.deepcopy(model)
    with torch.no_grad():
        damage(copied)
    return copied


def low_rank_(weight: torch.Tensor, rank: int) -> None:
    u, s, vh = torch.linalg.svd(weight, full_matrices=False)
    weight.copy_((u[..., :rank] * s[..., None, :rank]) @ vh[..., :rank, :])


def rtn_(weight: torch.Tensor, bits: int) -> None:
    levels = 2 ** (bits - 1) - 1
    scale = weight.abs().amax(dim=-1, keepdim=True).clamp_min(1e-10) / levels
    weight.copy_(torch.round(weight / scale).clamp(-levels, levels) * scale)


def prune_(weight: torch.Tensor, fraction: float) -> None:
    k = int(fraction * weight.numel())
    if k:
        threshold = weight.abs().flatten().kthvalue(k).values
        weight.mul_((weight.abs() > threshold).to(weight.dtype))
