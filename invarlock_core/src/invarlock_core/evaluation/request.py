"""What an evaluation is asked to do (:class:`EvaluationRequest`), what it returns
(:class:`EvaluationOutcome`) and the window settings a request resolves to."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs

from invarlock_core.errors import UsageError
from invarlock_core.evaluation.policy import TIERS, Profile
from invarlock_core.output_checks import check_output_location

if TYPE_CHECKING:
    from invarlock_core.report.sections import EvaluationReport

__all__ = ["EvaluationOutcome", "EvaluationRequest", "WindowSettings", "check_request", "window_settings"]


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
    keep_subject: bool = False
    """With ``edit``: keep the edited checkpoint in ``out/subject`` (removed after the evaluation
    otherwise: real checkpoints are gigabytes)."""


@attrs.frozen
class EvaluationOutcome:
    """The written report and the process exit code it implies."""

    report: dict[str, Any]
    report_path: Path
    markdown_path: Path
    exit_code: int
    sections: EvaluationReport | None = None
    """The same report as typed records."""

    @property
    def verdict(self) -> str:
        return str(self.report["verdict"])


@attrs.frozen
class WindowSettings:
    """Window length, spacing, counts and batch size after flags, profile and tier."""

    seq_len: int
    stride: int
    preview: int
    final: int
    batch: int


def _pick(flag: int | None, default: int) -> int:
    return flag if flag is not None else default


def window_settings(request: EvaluationRequest, profile: Profile, tier: str) -> WindowSettings:
    """The request's window settings; counts below the profile's floors are a usage error."""
    tier_windows = TIERS[tier].windows if profile.name != "dev" else 0
    seq_len = _pick(request.seq_len, profile.seq_len)
    stride = request.stride if request.stride is not None else request.seq_len
    settings = WindowSettings(
        seq_len=seq_len,
        stride=_pick(stride, profile.stride),
        preview=_pick(request.preview_windows, max(profile.preview_windows, tier_windows)),
        final=_pick(request.final_windows, max(profile.final_windows, tier_windows)),
        batch=_pick(request.batch_size, profile.batch),
    )
    floors = profile.floors
    for flag, value, floor in (
        ("--preview-windows", settings.preview, floors.preview_windows),
        ("--final-windows", settings.final, floors.final_windows),
    ):
        if value < floor:
            hint = " (use --profile dev for quick runs)" if profile.name != "dev" else ""
            raise UsageError(f"{flag} {value} is below the {profile.name} profile's floor of {floor}{hint}")
    if settings.seq_len < 2 or settings.stride < 1 or settings.batch < 1:
        raise UsageError("--seq-len must be >= 2, --stride and --batch-size >= 1")
    return settings


def check_request(request: EvaluationRequest, *, many: bool = False) -> None:
    """Refuse contradictory requests before any work (``many``: subjects come separately)."""
    if not many and (request.subject is None) == (request.edit is None):
        raise UsageError("give exactly one of --subject DIR or --edit SPEC")
    if request.out.exists() and not request.out.is_dir():
        raise UsageError(f"--out {request.out} exists and is not a directory")
    check_output_location(request.out, what="--out")
    if request.assurance not in ("gate", "off"):
        raise UsageError(f"--assurance {request.assurance!r}: expected gate or off")
