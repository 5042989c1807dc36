"""The run capsule: artifact file names, provenance capture and atomic artifact writes."""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from invarlock_core.atomic import atomic_write_json, atomic_write_text
from veriscope_gate.artifacts import Results, RunConfig, Summary
from veriscope_gate.envcapture import capture_env, redact_argv
from veriscope_gate.governance import log_head
from veriscope_gate.serialization import unstructure
from veriscope_gate.timeutil import utc_now
from veriscope_gate.version import __version__

__all__ = [
    "DEPENDENCIES_TXT",
    "ENVIRONMENT_TXT",
    "FIRST_FAIL",
    "MANUAL",
    "RESULTS",
    "RUNNER_LOG",
    "RUN_CONFIG",
    "SENTINELS",
    "SUMMARY",
    "WINDOW_SIGNATURE",
    "build_run_config",
    "has_sentinels",
    "write_results",
    "write_run_config",
]

RUN_CONFIG = "run_config_resolved.json"
WINDOW_SIGNATURE = "window_signature.json"
RESULTS = "results.json"
SUMMARY = "results_summary.json"
FIRST_FAIL = "first_fail_iter.txt"
MANUAL = "manual_judgement.json"
RUNNER_LOG = "runner_output.log"
DEPENDENCIES_TXT = "dependencies.txt"
ENVIRONMENT_TXT = "environment.txt"
SENTINELS: tuple[str, ...] = (RUN_CONFIG, RESULTS, SUMMARY, WINDOW_SIGNATURE)


def has_sentinels(outdir: Path) -> list[str]:
    """The sentinel files present in ``outdir`` (a non-empty list means it holds a capsule)."""
    return [name for name in SENTINELS if (outdir / name).exists()]


@functools.cache
def _git_sha(cwd: Path) -> tuple[str | None, list[str]]:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=False
        )
        if sha.returncode != 0:
            return None, []
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=5, check=False,
        )
        return sha.stdout.strip() or None, (["dirty"] if dirty.stdout.strip() else [])
    except (OSError, subprocess.SubprocessError):
        return None, []


def _determinism(environ: Mapping[str, str]) -> dict[str, Any]:
    notes: list[str] = []
    pyhash = environ.get("PYTHONHASHSEED") not in (None, "", "random")
    if not pyhash:
        notes.append("PYTHONHASHSEED is not fixed")
    cublas = environ.get("CUBLAS_WORKSPACE_CONFIG") in (":4096:8", ":16:8")
    status: dict[str, Any] = {"pyhashseed_ok": pyhash, "cublas_config_ok": cublas}
    torch = sys.modules.get("torch")
    if torch is not None:
        status["cudnn_deterministic"] = bool(torch.backends.cudnn.deterministic)
    notes.append("determinism is recorded, not enforced (--strict-determinism is roadmap)")
    status["notes"] = notes
    return status


@functools.cache
def _installed_distributions() -> str:
    lines = sorted(
        {f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()
         if d.metadata["Name"]}
    )
    return "\n".join(lines) + "\n"


def _write_dependencies(outdir: Path) -> dict[str, Any]:
    try:
        atomic_write_text(outdir / DEPENDENCIES_TXT, _installed_distributions())
        return {"method": "pip_freeze", "path": DEPENDENCIES_TXT,
                "notes": ["installed distributions read with importlib.metadata"]}
    except OSError as exc:  # pragma: no cover - best effort by contract
        return {"method": "unavailable", "notes": [f"could not write dependencies: {exc}"]}


def _write_environment(outdir: Path) -> None:
    """Best-effort ``environment.txt``: Python, platform and (when installed) torch facts."""
    import platform

    lines = [f"python: {sys.version.split()[0]}", f"platform: {platform.platform()}",
             f"machine: {platform.machine()}"]
    try:
        lines.append(f"torch: {importlib.metadata.version('torch')}")
    except importlib.metadata.PackageNotFoundError:
        lines.append("torch: not installed")
    torch = sys.modules.get("torch")  # never imported just for this
    if torch is not None:
        lines.append(f"cuda_available: {torch.cuda.is_available()}")
        lines.append(f"cuda_version: {getattr(torch.version, 'cuda', None)}")
    lines.append(f"dependencies: see {DEPENDENCIES_TXT}")
    with contextlib.suppress(OSError):  # best effort by contract
        atomic_write_text(outdir / ENVIRONMENT_TXT, "\n".join(lines) + "\n")


def build_run_config(
    outdir: Path,
    *,
    kind: str,
    run_id: str,
    gate_preset: str,
    veriscope_argv: Sequence[str],
    runner_cmd: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> RunConfig:
    """Provenance for ``run_config_resolved.json`` (writes ``dependencies.txt`` next to it)."""
    env = capture_env(os.environ if environ is None else environ)
    argv, argv_redacted = redact_argv(list(veriscope_argv))
    argv_block: dict[str, list[str]] = {"veriscope_argv": argv}
    runner_redacted = False
    if runner_cmd is not None:
        argv_block["runner_cmd"], runner_redacted = redact_argv(list(runner_cmd))
    sha, notes = _git_sha(Path.cwd())
    _write_environment(outdir)
    capture = {
        "allowlist": env.allowlist,
        "deny_exact": env.deny_exact,
        "deny_regex": env.deny_regex,
        "redactions_applied": env.redactions_applied,
        "argv_redactions_applied": argv_redacted or runner_redacted,
    }
    return RunConfig(
        ts_utc=utc_now(),
        package={"name": "veriscope-gate", "version": __version__},
        git_sha=sha,
        run={"kind": kind, "run_id": run_id, "outdir": str(outdir.resolve())},
        argv=argv_block,
        env=env.env,
        env_capture=capture,
        determinism_status=_determinism(os.environ if environ is None else environ),
        dependencies=_write_dependencies(outdir),
        gate_preset=gate_preset,
        notes=notes,
    )


def write_run_config(outdir: Path, config: RunConfig) -> None:
    """Write ``run_config_resolved.json`` atomically."""
    atomic_write_json(outdir / RUN_CONFIG, unstructure(config))


def write_results(outdir: Path, results: Results | None, summary: Summary) -> None:
    """Write results.json (when given), results_summary.json and the first-fail marker, atomically.

    ``first_fail_iter.txt`` exists iff ``summary.first_fail_iter`` is not null. The summary
    records the governance log's head, so the seal that follows it can be found and a log cut
    short before it is detected.
    """
    if results is not None:
        atomic_write_json(outdir / RESULTS, unstructure(results))
    data = unstructure(summary)
    data["governance_head"] = log_head(outdir)
    atomic_write_json(outdir / SUMMARY, data)
    marker = outdir / FIRST_FAIL
    if summary.first_fail_iter is not None:
        atomic_write_text(marker, f"{summary.first_fail_iter}\n")
    elif marker.exists():
        marker.unlink()
