"""Allowlisted, redacted environment and argv capture for ``run_config_resolved.json``.

Only variables whose names match the allowlist (exact names or ``PREFIX_*`` prefixes) are ever
read into an artifact. A captured variable whose name is in ``deny_exact`` or matches a
``deny_regex``, or whose value looks like a credential (``scheme://user:secret@host``), keeps its
key with the value ``***REDACTED***``. ``redactions_applied`` is false only if no rule matched.
Command-line arguments get the same treatment: the value of a flag whose name matches a deny
rule (``--hf_token X``, ``--api-key=X``) is replaced.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import attrs

__all__ = [
    "DEFAULT_ALLOWLIST",
    "DEFAULT_DENY_EXACT",
    "DEFAULT_DENY_REGEX",
    "REDACTED",
    "EnvCapture",
    "argv_secrets",
    "capture_env",
    "redact_argv",
]

REDACTED = "***REDACTED***"

DEFAULT_ALLOWLIST: tuple[str, ...] = (
    "VERISCOPE_*",
    "CUDA_*",
    "SLURM_*",
    "WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "PYTHONHASHSEED",
    "CUBLAS_WORKSPACE_CONFIG",
    "OMP_NUM_THREADS",
)
DEFAULT_DENY_EXACT: tuple[str, ...] = (
    "VERISCOPE_API_KEY",
    "VERISCOPE_TOKEN",
    "SLURM_JOB_ACCOUNT",
    "SLURM_JOB_USER",
)
DEFAULT_DENY_REGEX: tuple[str, ...] = (
    r"(?i)(TOKEN|SECRET|PASSW(OR)?D|PASSWD|API[_-]?KEY|CREDENTIAL|PRIVATE|AUTH|COOKIE|SESSION_?KEY|SIGNATURE|CERT)",
)
_CREDENTIAL_VALUE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:[^/\s@]+@")


@attrs.frozen
class EnvCapture:
    """The ``env`` and ``env_capture`` blocks of ``run_config_resolved.json``."""

    env: dict[str, str]
    allowlist: list[str]
    deny_exact: list[str]
    deny_regex: list[str]
    redactions_applied: bool


def _allowed(name: str, allowlist: Sequence[str]) -> bool:
    for rule in allowlist:
        if rule.endswith("*"):
            if name.startswith(rule[:-1]):
                return True
        elif name == rule:
            return True
    return False


def _denied(name: str, deny_exact: Sequence[str], patterns: Sequence[re.Pattern[str]]) -> bool:
    return name in deny_exact or any(p.search(name) for p in patterns)


def capture_env(
    environ: Mapping[str, str],
    *,
    allowlist: Sequence[str] = DEFAULT_ALLOWLIST,
    deny_exact: Sequence[str] = DEFAULT_DENY_EXACT,
    deny_regex: Sequence[str] = DEFAULT_DENY_REGEX,
) -> EnvCapture:
    """Capture the allowlisted subset of ``environ`` with deny rules applied."""
    patterns = [re.compile(p) for p in deny_regex]
    env: dict[str, str] = {}
    redacted = False
    for name in sorted(environ):
        if not _allowed(name, allowlist):
            continue
        value = environ[name]
        if _denied(name, deny_exact, patterns) or _CREDENTIAL_VALUE.search(value):
            env[name] = REDACTED
            redacted = True
        else:
            env[name] = value
    return EnvCapture(
        env=env,
        allowlist=list(allowlist),
        deny_exact=list(deny_exact),
        deny_regex=list(deny_regex),
        redactions_applied=redacted,
    )


def argv_secrets(argv: Sequence[str]) -> list[str]:
    """The values :func:`redact_argv` hides in ``argv`` (to scrub them from logs too)."""
    redacted, _ = redact_argv(argv)
    secrets = []
    for original, shown in zip(argv, redacted):
        if original != shown:
            flag, eq, value = original.partition("=")
            secrets.append(value if eq and shown == f"{flag}={REDACTED}" else original)
    return [s for s in secrets if s]


def redact_argv(
    argv: Sequence[str], *, deny_regex: Sequence[str] = DEFAULT_DENY_REGEX
) -> tuple[list[str], bool]:
    """Replace values of secret-looking flags (and credential URLs) in ``argv``."""
    patterns = [re.compile(p) for p in deny_regex]
    out: list[str] = []
    redacted = False
    redact_next = False
    for arg in argv:
        if redact_next:
            out.append(REDACTED)
            redacted = True
            redact_next = False
            continue
        if arg.startswith("-"):
            flag, eq, _value = arg.partition("=")
            if any(p.search(flag) for p in patterns):
                if eq:
                    out.append(f"{flag}={REDACTED}")
                    redacted = True
                else:
                    out.append(arg)
                    redact_next = True
                continue
        if _CREDENTIAL_VALUE.search(arg):
            out.append(REDACTED)
            redacted = True
            continue
        out.append(arg)
    return out, redacted
