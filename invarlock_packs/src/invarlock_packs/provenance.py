"""Source and environment provenance sealed into a pack (``metadata/``).

* :func:`collect_source_repo` reads the git checkout a pack was built from. It fails closed: when
  git metadata cannot be collected it falls back only to an explicit snapshot marker
  (``GPU_RUN_SOURCE.txt`` in the checkout root, or the key-value file named by
  ``INVARLOCK_SOURCE_REPO_MARKER``) with a required ``source_commit=<40 hex>``.
* :func:`collect_environment` records interpreter, platform and package versions. It never reads
  environment variables' values and never imports torch (versions come from package metadata).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from invarlock_core.errors import InputError

__all__ = [
    "MARKER_ENV",
    "MARKER_FILE",
    "collect_environment",
    "collect_source_repo",
    "parse_source_marker",
    "redact_url",
]

MARKER_FILE: Final = "GPU_RUN_SOURCE.txt"
MARKER_ENV: Final = "INVARLOCK_SOURCE_REPO_MARKER"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_MARKER_KEYS: Final = (
    "source_commit",
    "source_branch",
    "source_describe",
    "source_uri",
    "source_dirty",
)
_PACKAGES: Final = (
    "invarlock-core",
    "invarlock-edits",
    "invarlock-guards",
    "invarlock-packs",
    "veriscope-gate",
    "cryptography",
    "jsonschema",
    "numpy",
    "torch",
    "transformers",
    "safetensors",
)


def redact_url(url: str) -> str:
    """Drop any user name, password or token from a remote URL."""
    parts = urlsplit(url)
    if parts.scheme and parts.netloc and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return url


def _git(checkout: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(checkout), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def parse_source_marker(text: str, *, source: str) -> dict[str, Any]:
    """Parse a ``key=value`` snapshot marker; ``source_commit`` must be 40 lowercase hex."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        if not sep:
            raise InputError(f"{source}: line is not key=value: {stripped[:60]!r}")
        if key.strip() in _MARKER_KEYS:
            values[key.strip()] = value.strip()
    commit = values.get("source_commit", "").lower()
    if not _COMMIT.match(commit):
        raise InputError(f"{source}: source_commit=<40 hex> is required")
    result: dict[str, Any] = {
        "origin": "snapshot_marker",
        "commit": commit,
        "branch": values.get("source_branch"),
        "describe": values.get("source_describe"),
        "uri": redact_url(values["source_uri"]) if values.get("source_uri") else None,
        "dirty": values.get("source_dirty", "").lower() in {"1", "true", "yes"}
        if "source_dirty" in values
        else None,
    }
    return result


def collect_source_repo(
    checkout: str | Path, *, marker: str | Path | None = None
) -> dict[str, Any]:
    """Describe the source checkout: from git, else from an explicit snapshot marker, else fail.

    ``marker`` defaults to ``$INVARLOCK_SOURCE_REPO_MARKER``, then ``<checkout>/GPU_RUN_SOURCE.txt``.
    """
    root = Path(checkout)
    commit = _git(root, "rev-parse", "--verify", "HEAD")
    if commit and _COMMIT.match(commit):
        remote = _git(root, "config", "--get", "remote.origin.url")
        status = _git(root, "status", "--porcelain", "--untracked-files=no")
        branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD")
        return {
            "origin": "git",
            "commit": commit,
            "branch": branch if branch and branch != "HEAD" else None,
            "describe": _git(root, "describe", "--always", "--dirty", "--tags"),
            "uri": redact_url(remote) if remote else None,
            "dirty": bool(status) if status is not None else None,
        }
    marker_path = Path(marker) if marker else None
    if marker_path is None and os.environ.get(MARKER_ENV):
        marker_path = Path(os.environ[MARKER_ENV])
    if marker_path is None and (root / MARKER_FILE).is_file():
        marker_path = root / MARKER_FILE
    if marker_path is None:
        raise InputError(
            f"cannot collect source provenance: {root} is not a git checkout with a commit and no "
            f"snapshot marker ({MARKER_FILE} or ${MARKER_ENV}) exists"
        )
    try:
        text = marker_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read snapshot marker {marker_path}: {exc}") from exc
    return parse_source_marker(text, source=str(marker_path))


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect_environment() -> dict[str, Any]:
    """Interpreter, platform and package versions of the building machine (no env var values)."""
    return {
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable_prefix": Path(sys.prefix).name,
        },
        "platform": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
        },
        "packages": {name: _version(name) for name in _PACKAGES},
    }
