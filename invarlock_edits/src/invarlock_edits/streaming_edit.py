""":class:`StreamingEdit`: an :class:`~invarlock_core.editing.Edit` built from a planner function.

Every built-in edit and injection is a ``StreamingEdit``, and third-party plugins can use it too:
supply typed parameters and a planner ``(checkpoint, params, seed) -> EditPlan``; parsing (with
the ``:clean:`` sentinel), shard-by-shard writing, coverage and ``edit_metadata.json`` come free.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from invarlock_core.editing import ArtifactClass, EditParameter, EditSpec
from invarlock_core.errors import UsageError
from invarlock_core.models import resolve_device
from invarlock_edits.checkpoint import Checkpoint
from invarlock_edits.engine import Progress, write_edited_checkpoint
from invarlock_edits.metadata import NO_LABELS, Detection, SubjectLabels, write_edit_metadata
from invarlock_edits.params import ParamSpec, parse_arguments
from invarlock_edits.plan import EditPlan
from invarlock_edits.scopes import Scope
from invarlock_edits.tuned_params import (
    CLEAN_SENTINEL,
    TunedParams,
    find_tuned_params_file,
    model_keys,
)
from invarlock_edits.version import __version__

__all__ = ["DEVICE_ENV", "Planner", "ResolvedEdit", "StreamingEdit"]

DEVICE_ENV = "INVARLOCK_EDIT_DEVICE"
"""Device edits compute on when the caller does not say (default ``cpu``)."""

Planner = Callable[[Checkpoint, Mapping[str, Any], int], EditPlan]


@attrs.frozen
class ResolvedEdit:
    """A spec bound to concrete parameter values (``:clean:`` resolved)."""

    params: dict[str, Any]
    resolved_spec: str
    tuned: dict[str, Any] | None


def _json_value(value: Any) -> Any:
    return value.text if isinstance(value, Scope) else value


def _version() -> str:
    return __version__


@attrs.frozen
class StreamingEdit:
    """An edit or fault injection that streams a checkpoint through an :class:`EditPlan`."""

    name: str
    summary: str
    artifact_class: ArtifactClass
    specs: tuple[ParamSpec, ...]
    planner: Planner
    storage_format: str = "dense_safetensors"
    description: str = ""
    """What the edit changes, for ``invarlock edit list`` and the docs."""
    detection: Detection | None = None
    supports_clean: bool = False
    """Whether ``NAME:clean[:scope]`` resolves parameters from a tuned-params file."""
    producer: tuple[str, str] | None = None
    """``(distribution, version)`` recorded in the metadata; defaults to invarlock-edits."""

    @property
    def parameters(self) -> tuple[EditParameter, ...]:
        return tuple(spec.public() for spec in self.specs)

    def resolve(
        self, spec: EditSpec, checkpoint: Checkpoint, *, tuned_params: str | Path | None = None
    ) -> ResolvedEdit:
        """Bind ``spec``'s arguments, reading tuned values for ``NAME:clean[:...]``."""
        if spec.name != self.name:
            raise UsageError(f"edit {self.name} cannot apply spec {spec}")
        args = list(spec.args)
        preset: dict[str, Any] | None = None
        tuned: dict[str, Any] | None = None
        if args and args[0] == CLEAN_SENTINEL:
            if not self.supports_clean:
                raise UsageError(
                    f"{self.name} has no tuned clean parameters (the :clean: sentinel is for edits)"
                )
            args.pop(0)
            table = TunedParams.load(find_tuned_params_file(tuned_params))
            keys = model_keys(checkpoint.path, checkpoint.config)
            preset = table.for_edit(self.name, keys)
            if not any(p.kind == "scope" and p.name in preset for p in self.specs) and not args:
                args = [
                    "ffn"
                ]  # clean edits are FFN-only unless the tuned file or spec says otherwise
            tuned = {"path": str(table.path), "digest": table.digest, "model_keys": list(keys)}
        params = parse_arguments(self.name, self.specs, args, preset=preset)
        parts = [self.name]
        parts += [f"{p.name}={_spec_text(params[p.name])}" for p in self.specs if p.kind != "scope"]
        parts += [params[p.name].text for p in self.specs if p.kind == "scope"]
        return ResolvedEdit(params, ":".join(parts), tuned)

    def apply(
        self,
        spec: EditSpec,
        *,
        baseline: Path,
        out: Path,
        seed: int,
        device: str | None = None,
        tuned_params: str | Path | None = None,
        progress: Progress | None = None,
        labels: SubjectLabels = NO_LABELS,
    ) -> dict[str, Any]:
        """Write the edited checkpoint and ``edit_metadata.json`` into the empty directory ``out``.

        ``labels`` (scenario id, default the edit's name, and category) label the subject for
        evidence packs, which check them against the suite's ``scenarios.json``.
        """
        out = Path(out)
        if not out.is_dir():
            raise UsageError(f"edit output directory {out} does not exist (create it empty first)")
        if any(out.iterdir()):
            raise UsageError(f"edit output directory {out} is not empty")
        checkpoint = Checkpoint.open(baseline)
        resolved = self.resolve(spec, checkpoint, tuned_params=tuned_params)
        plan = self.planner(checkpoint, resolved.params, seed)
        if not plan.declared and not plan.config_updates:
            raise UsageError(
                f"{spec}: selects no tensors of {baseline} (check the scope and layer filter)"
            )
        chosen_device = resolve_device(device or os.environ.get(DEVICE_ENV) or "cpu")
        result = write_edited_checkpoint(
            checkpoint, plan, out, device=chosen_device, progress=progress
        )
        scope = next((v.text for v in resolved.params.values() if isinstance(v, Scope)), None)
        distribution, version = self.producer or ("invarlock-edits", _version())
        return write_edit_metadata(
            out,
            edit_type=self.name,
            artifact_class=self.artifact_class,
            spec=str(spec),
            seed=seed,
            baseline=checkpoint.path,
            output_files=result.files,
            coverage=result.coverage.to_json(scope),
            producer={"name": distribution, "version": version},
            labels=labels,
            resolved_spec=resolved.resolved_spec,
            storage_format=self.storage_format,
            parameters={k: _json_value(v) for k, v in resolved.params.items()},
            tuned_params=resolved.tuned,
            details=dict(plan.details),
            detection=self.detection.to_json() if self.detection else None,
        )


def _spec_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)
