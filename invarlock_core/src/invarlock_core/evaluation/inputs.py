"""The first phase of an evaluation: resolve a request into everything the later phases need.

Profile, preset and policy, window settings, the guard plan, the dataset provider and its options,
and the device, all checked before a model is loaded: a bad flag fails in milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from invarlock_core.datasets.environment import resolve_dataset_options
from invarlock_core.datasets.provider import DatasetOptions, DatasetProvider
from invarlock_core.evaluation.guard_plan import GuardPlan, plan_guards
from invarlock_core.evaluation.policy import (
    Policy,
    Preset,
    Profile,
    build_policy,
    load_preset,
    load_profile,
)
from invarlock_core.evaluation.request import (
    EvaluationRequest,
    WindowSettings,
    check_request,
    window_settings,
)

if TYPE_CHECKING:
    from invarlock_core.plugins import Registries

__all__ = ["ResolvedInputs", "resolve_inputs"]


@attrs.frozen(eq=False)
class ResolvedInputs:
    """A checked request with its policy, settings, guards, dataset provider and device."""

    request: EvaluationRequest
    registries: Registries
    profile: Profile
    preset: Preset | None
    policy: Policy
    settings: WindowSettings
    guards: GuardPlan
    provider: DatasetProvider
    dataset_options: DatasetOptions
    device: str


def _policy(request: EvaluationRequest, profile: Profile, preset: Preset | None) -> Policy:
    return build_policy(
        tier=request.tier,
        profile=profile,
        preset=preset,
        acceptance_range=request.acceptance_range,
        drift_band=request.drift_band,
        replicates=request.bootstrap_replicates,
        alpha=request.alpha,
        seed=request.seed,
    )


def _dataset(request: EvaluationRequest, registries: Registries) -> tuple[DatasetProvider, DatasetOptions]:
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
    return registries.datasets.get(provider_name), options


def resolve_inputs(
    request: EvaluationRequest,
    registries: Registries | None = None,
    *,
    subjects: Sequence[Path] = (),
) -> ResolvedInputs:
    """Check ``request`` (and the extra ``subjects`` of a many-subject run) and resolve it."""
    check_request(request, many=bool(subjects))
    from invarlock_core.models import resolve_device, validate_checkpoint_dir

    if registries is None:
        from invarlock_core.plugins import get_registries

        registries = get_registries()
    profile = load_profile(request.profile)
    preset = load_preset(request.preset) if request.preset is not None else None
    policy = _policy(request, profile, preset)
    settings = window_settings(request, profile, policy.tier)
    guards = plan_guards(registries, requested=request.guards, preset=preset, tier=policy.tier, seed=request.seed)
    provider, options = _dataset(request, registries)
    for checkpoint in (request.baseline, request.subject, *subjects):
        if checkpoint is not None:
            validate_checkpoint_dir(checkpoint)
    return ResolvedInputs(
        request=request,
        registries=registries,
        profile=profile,
        preset=preset,
        policy=policy,
        settings=settings,
        guards=guards,
        provider=provider,
        dataset_options=options,
        device=resolve_device(request.device),
    )
