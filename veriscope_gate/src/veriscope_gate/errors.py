"""Veriscope's own exception root, with narrow subclasses mapped to Veriscope's documented exit codes.

Veriscope is its own product (DESIGN.md: one exception root per product), so its expected failures
derive from :class:`VeriscopeError`, not from InvarLock's root. The ``veriscope`` CLI prints
``error: <message>`` on one line and exits with :attr:`VeriscopeError.exit_code`:

* 0 success, 2 invalid input / validation failed / incompatible runs, 3 internal (veriscope) failure.
"""

from __future__ import annotations

from invarlock_core.errors import OneLineError

__all__ = [
    "EXIT_INTERNAL",
    "EXIT_INVALID",
    "EXIT_OK",
    "ArtifactError",
    "IncompatibleRunsError",
    "MetricError",
    "PresetError",
    "RunnerError",
    "ValidationFailed",
    "VeriscopeDependencyError",
    "VeriscopeError",
    "VeriscopeUsageError",
]

EXIT_OK = 0
"""Success (also: gate WARN/FAIL decisions never change an exit code)."""
EXIT_INVALID = 2
"""Invalid usage or input, a failed validation, incompatible runs, or a crashed runner."""
EXIT_INTERNAL = 3
"""Veriscope itself failed (``run_status="veriscope_failure"``)."""


class VeriscopeError(OneLineError):
    """Root of every expected Veriscope failure; ``exit_code`` is the CLI's exit status."""

    exit_code: int = EXIT_INTERNAL


class VeriscopeUsageError(VeriscopeError):
    """Malformed command line or API call (unknown preset, bad flag combination)."""

    exit_code = EXIT_INVALID


class PresetError(VeriscopeUsageError):
    """A gate preset is unknown or its controls are invalid."""


class MetricError(VeriscopeUsageError):
    """A metric is unknown, registered twice, or declares an invalid calibration range."""


class ArtifactError(VeriscopeError):
    """An artifact is missing, unreadable or malformed (report/calibrate/diff cannot proceed)."""

    exit_code = EXIT_INVALID


class ValidationFailed(ArtifactError):
    """``veriscope validate`` found schema or cross-artifact violations (every one is listed)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        shown = "; ".join(self.problems[:6])
        more = f" (+{len(self.problems) - 6} more)" if len(self.problems) > 6 else ""
        super().__init__(f"validation failed: {shown}{more}")


class IncompatibleRunsError(ArtifactError):
    """Runs cannot be compared (window signature or gate preset differ, partial capsule)."""


class RunnerError(VeriscopeError):
    """The wrapped training command could not be started."""

    exit_code = EXIT_INVALID


class VeriscopeDependencyError(VeriscopeError):
    """An optional dependency (torch, transformers, datasets) is missing."""

    exit_code = EXIT_INVALID
