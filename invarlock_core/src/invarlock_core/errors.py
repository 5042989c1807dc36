"""One exception root for InvarLock, with narrow subclasses mapped to exit codes in one place.

Expected failures (bad input, failed gates, failed verification) are raised as subclasses of
:class:`InvarlockError`; the CLI prints ``error: <message>`` on one line and exits with the
class's :attr:`~InvarlockError.exit_code`. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "EXIT_FAIL",
    "EXIT_INTERNAL",
    "EXIT_OK",
    "EXIT_USAGE",
    "ConfigError",
    "DatasetError",
    "DependencyError",
    "EvaluationError",
    "InputError",
    "InvarlockError",
    "ModelLoadError",
    "OneLineError",
    "OutputError",
    "PluginError",
    "SchemaError",
    "TokenizerMismatchError",
    "UsageError",
    "VerificationError",
]

EXIT_OK = 0
"""Success: the verdict is PASS, or verification succeeded."""
EXIT_FAIL = 1
"""A gate failed (verdict FAIL) or a report failed verification."""
EXIT_USAGE = 2
"""Invalid input or usage: bad flags, missing files, unreadable models or data."""
EXIT_INTERNAL = 3
"""An internal error: a bug or an environment problem we could not classify."""


class OneLineError(Exception):
    """An expected failure with a one-line message and a CLI exit code.

    Not a product root itself: :class:`InvarlockError` and Veriscope's ``VeriscopeError`` derive
    from it, so both command lines print and exit the same way.
    """

    exit_code: int = EXIT_INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        # One line, always: the CLI prints exactly this.
        return " ".join(self.message.split())


class InvarlockError(OneLineError):
    """Root of every expected InvarLock failure.

    ``exit_code`` is the process exit status the CLI uses for this failure.
    """


class UsageError(InvarlockError):
    """The command line or API call is malformed (unknown option value, conflicting flags)."""

    exit_code = EXIT_USAGE


class InputError(InvarlockError):
    """An input file or directory is missing, unreadable or not what it claims to be."""

    exit_code = EXIT_USAGE


class ConfigError(InputError):
    """A configuration file (preset, profile, tier, TOML) is invalid."""


class SchemaError(InputError):
    """A JSON artifact does not match its JSON Schema."""


class ModelLoadError(InputError):
    """A model checkpoint directory cannot be loaded (missing, corrupt, unsupported)."""


class TokenizerMismatchError(InputError):
    """The subject's tokenizer does not encode text the same way as the baseline's."""


class DatasetError(InputError):
    """A dataset provider cannot produce evaluation text (missing file, empty, offline)."""


class PluginError(InputError):
    """A plugin is unknown, misconfigured, or registers something twice."""


class OutputError(InvarlockError):
    """An output could not be written (read-only directory, full disk, not a directory)."""

    exit_code = EXIT_USAGE


class DependencyError(InvarlockError):
    """An optional dependency (torch, transformers, ray, datasets) is not installed."""

    exit_code = EXIT_USAGE


class EvaluationError(InvarlockError):
    """The evaluation could not be carried out (not a gate failure: those are verdicts)."""

    exit_code = EXIT_INTERNAL


class VerificationError(InvarlockError):
    """A report or artifact failed independent verification."""

    exit_code = EXIT_FAIL
