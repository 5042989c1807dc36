"""The process-safe ``veriscope run`` wrapper.

* The runner is spawned in a **new session** (its own process group); SIGINT/SIGTERM received by
  the wrapper are forwarded to that whole group.
* Its stdout/stderr are streamed **live**, line by line, to the console and to
  ``runner_output.log`` (``PYTHONUNBUFFERED=1`` is set for Python runners).
* After the runner exits (normally, crashed or interrupted) the wrapper finalises the capsule:
  it stamps ``run_status``/``runner_exit_code``/``runner_signal``/``wrapper_exit_code`` into the
  runner's summary, or writes a **partial** summary (``partial=true``) when there is none.
* The exit code derives from ``run_status`` (success 0, user_code_failure 2, veriscope_failure
  3); if no summary can be read: runner non-zero → 2, else 3.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

from invarlock_core.atomic import atomic_write_json
from invarlock_core.output_checks import output_problem
from veriscope_gate.capsule import (
    RESULTS,
    RUNNER_LOG,
    SUMMARY,
    WINDOW_SIGNATURE,
    build_run_config,
    has_sentinels,
    write_results,
    write_run_config,
)
from veriscope_gate.controls import load_preset
from veriscope_gate.envcapture import REDACTED, argv_secrets
from veriscope_gate.errors import (
    EXIT_INTERNAL,
    EXIT_INVALID,
    EXIT_OK,
    RunnerError,
    VeriscopeDependencyError,
    VeriscopeError,
    VeriscopeUsageError,
)
from veriscope_gate.governance import append_event, log_head, seal_results
from veriscope_gate.serialization import read_json_object, structure, unstructure
from veriscope_gate.timeutil import utc_now

__all__ = [
    "HF_RUNNER_ENV",
    "ITERATION_FLAGS",
    "RUNNER_KINDS",
    "check_iteration_counts",
    "exit_code_for_status",
    "finalize_capsule",
    "resolve_outdir",
    "run_wrapped",
    "runner_command",
    "runner_overrides",
]

HF_RUNNER_ENV = "VERISCOPE_HF_RUNNER_CMD"
RUNNER_KINDS = ("gpt", "hf")
ITERATION_FLAGS = ("--max_iters", "--max-iters", "--max_steps", "--max-steps")
_STATUS_EXIT = {"success": EXIT_OK, "user_code_failure": EXIT_INVALID, "veriscope_failure": EXIT_INTERNAL}


def exit_code_for_status(run_status: str) -> int:
    """The wrapper exit code for a ``run_status``."""
    return _STATUS_EXIT.get(run_status, EXIT_INTERNAL)


def resolve_outdir(outdir: Path, *, force: bool, run_id: str) -> Path:
    """Refuse an OUTDIR holding sentinels unless ``force``; then use a fresh subdirectory."""
    present = has_sentinels(outdir) if outdir.is_dir() else []
    if outdir.exists() and not outdir.is_dir():
        raise VeriscopeUsageError(f"--outdir {outdir} exists and is not a directory")
    if not present:
        return outdir
    if not force:
        raise VeriscopeUsageError(
            f"{outdir} already contains Veriscope artifacts ({', '.join(present)}); "
            "pass --force to keep them and run in a fresh subdirectory"
        )
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return outdir / f"run-{stamp}-{run_id[:8]}"


def _flag_values(args: Sequence[str], flags: Sequence[str]) -> list[str]:
    """Values of ``--flag VALUE`` and ``--flag=VALUE`` in ``args``."""
    values = []
    for index, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if name in flags:
            if eq:
                values.append(value)
            elif index + 1 < len(args):
                values.append(args[index + 1])
    return values


def runner_overrides(runner_args: Sequence[str]) -> dict[str, Any]:
    """The gate-control ``--override KEY=VALUE`` items of the runner arguments, parsed."""
    from veriscope_gate.runners.common import parse_overrides

    return parse_overrides(_flag_values(runner_args, ("--override",)))


def check_iteration_counts(runner_args: Sequence[str]) -> None:
    """``--max_iters``/``--max_steps`` (any spelling) must be positive integers."""
    for value in _flag_values(runner_args, ITERATION_FLAGS):
        if not value.isdigit() or int(value) < 1:
            raise VeriscopeUsageError(f"--max_iters must be a positive integer, got {value!r}")


def _has_flag(args: Sequence[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in args)


def runner_command(
    kind: str, *, outdir: Path, run_id: str, gate_preset: str, runner_args: Sequence[str],
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """The child command: the built-in runner (or ``VERISCOPE_HF_RUNNER_CMD`` for ``hf``).

    ``--outdir``, ``--run_id`` and ``--gate-preset`` are inserted when the runner args lack them.
    """
    env = os.environ if environ is None else environ
    if kind == "gpt":
        base = [sys.executable, "-u", "-m", "veriscope_gate.runners.gpt"]
    elif kind == "hf":
        override = env.get(HF_RUNNER_ENV, "").strip()
        base = shlex.split(override) if override else [sys.executable, "-u", "-m", "veriscope_gate.runners.hf"]
    else:
        raise VeriscopeUsageError(f"unknown runner {kind!r}; valid: {', '.join(RUNNER_KINDS)}")
    args = list(runner_args)
    extra: list[str] = []
    if not _has_flag(args, "--outdir"):
        extra += ["--outdir", str(outdir)]
    if not _has_flag(args, "--run_id"):
        extra += ["--run_id", run_id]
    if not (_has_flag(args, "--gate-preset") or _has_flag(args, "--gate_preset")):
        extra += ["--gate-preset", gate_preset]
    return base + extra + args


def hf_preflight() -> None:
    """Fail fast when the HF runner's dependencies are missing."""
    missing = [m for m in ("torch", "transformers", "datasets") if importlib.util.find_spec(m) is None]
    if missing:
        raise VeriscopeDependencyError(
            f"veriscope run hf needs {', '.join(missing)}: pip install 'veriscope-gate[hf]' datasets"
        )


def _pump(
    stream: IO[bytes], sink: IO[str], log: IO[bytes], lock: threading.Lock,
    secrets: Sequence[bytes] = (),
) -> None:
    """Copy the child's lines to the console and to ``runner_output.log`` (secrets scrubbed)."""
    for line in iter(stream.readline, b""):
        logged = line
        for secret in secrets:
            logged = logged.replace(secret, REDACTED.encode())
        with lock:
            log.write(logged)
            log.flush()
        sink.write(line.decode("utf-8", errors="replace"))
        sink.flush()
    stream.close()


class _Forwarder:
    """Forwards SIGINT/SIGTERM to the child's process group while installed."""

    def __init__(self, pgid: int) -> None:
        self.pgid = pgid
        self.forwarded: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Forwarder:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.forwarded = signal.Signals(signum).name
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signum)

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _summary_controls_hash(outdir: Path) -> str | None:
    """The gate controls hash the finalised summary records (None when it has none)."""
    try:
        value = read_json_object(outdir / SUMMARY).get("gate_controls_hash")
    except VeriscopeError:
        return None
    return value if isinstance(value, str) else None


def finalize_capsule(
    outdir: Path, *, run_id: str, gate_preset: str, kind: str, runner_exit_code: int | None,
    runner_signal: str | None, started_ts_utc: str, wrapper_failed: bool = False,
) -> str:
    """Stamp the run outcome into the capsule (or write a partial one); returns ``run_status``."""
    from veriscope_gate.artifacts import Profile, Summary, WindowSignatureRef
    from veriscope_gate.metrics import builtin_metrics
    from veriscope_gate.signature import build_window_signature, window_signature_hash

    if wrapper_failed:
        status = "veriscope_failure"
    elif runner_exit_code == 0:
        status = "success"
    else:
        status = "user_code_failure"
    summary_path = outdir / SUMMARY
    summary: Summary | None = None
    if summary_path.exists():
        try:
            summary = structure(read_json_object(summary_path), Summary)
        except VeriscopeError:
            summary = None
    if summary is None and runner_exit_code == 0 and not wrapper_failed:
        status = "veriscope_failure"  # the runner claimed success but left no summary
    stamp = {
        "run_status": status,
        "runner_exit_code": runner_exit_code,
        "runner_signal": runner_signal,
    }
    wrapper_exit = exit_code_for_status(status)
    if summary is not None:
        data = unstructure(summary)
        data.update(stamp, wrapper_exit_code=wrapper_exit, ended_ts_utc=data.get("ended_ts_utc") or utc_now(),
                    governance_head=log_head(outdir))
        results_path = outdir / RESULTS
        if results_path.exists():
            try:
                results = read_json_object(results_path)
                results.update(stamp)
                atomic_write_json(results_path, results)
            except VeriscopeError:
                pass
        atomic_write_json(summary_path, data)
        return status
    sig_path = outdir / WINDOW_SIGNATURE
    if sig_path.exists():
        signature = read_json_object(sig_path)
    else:
        controls = load_preset(gate_preset)
        signature = build_window_signature(
            gate_preset=gate_preset, controls=controls,
            ranges={m.name: m.calibration_range for m in builtin_metrics()},
            runner={"kind": kind}, probe={},
        )
        atomic_write_json(sig_path, signature)
    partial = Summary(
        run_id=run_id,
        window_signature_ref=WindowSignatureRef(hash=window_signature_hash(signature)),
        profile=Profile(gate_preset=gate_preset),
        run_status=status,  # type: ignore[arg-type]
        runner_exit_code=runner_exit_code,
        runner_signal=runner_signal,
        started_ts_utc=started_ts_utc,
        ended_ts_utc=utc_now(),
        counts={"evaluated": 0, "skip": 0, "pass": 0, "warn": 0, "fail": 0},
        final_decision="skip",
        first_fail_iter=None,
        partial=True,
        wrapper_exit_code=wrapper_exit,
    )
    write_results(outdir, None, partial)
    return status


def run_wrapped(
    kind: str,
    *,
    gate_preset: str,
    outdir: Path,
    force: bool,
    runner_args: Sequence[str],
    veriscope_argv: Sequence[str],
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """Run the ``kind`` runner under the wrapper and return the exit code."""
    from veriscope_gate.session import new_run_id

    out = stdout or sys.stdout
    err = stderr or sys.stderr
    # Unknown presets, mistyped --override values and non-positive iteration counts fail
    # before anything is written or launched.
    load_preset(gate_preset, runner_overrides(runner_args))
    check_iteration_counts(runner_args)
    problem = output_problem(outdir, directory=True)
    if problem:
        raise VeriscopeUsageError(problem)
    if kind == "hf":
        hf_preflight()
    run_id = new_run_id()
    target = resolve_outdir(outdir, force=force, run_id=run_id)
    target.mkdir(parents=True, exist_ok=True)
    cmd = runner_command(kind, outdir=target, run_id=run_id, gate_preset=gate_preset,
                         runner_args=runner_args)
    started = utc_now()
    run_outdir = str(target.resolve())
    try:
        write_run_config(target, build_run_config(target, kind=kind, run_id=run_id,
                                                  gate_preset=gate_preset,
                                                  veriscope_argv=veriscope_argv, runner_cmd=cmd))
    except OSError as exc:  # best effort by contract: must not block the run
        print(f"veriscope: warning: run_config_resolved.json not written: {exc}", file=err)
    append_event(target, "run_started", run_id=run_id, run_outdir=run_outdir,
                 payload={"kind": kind, "gate_preset": gate_preset})
    print(f"veriscope: run_id={run_id} outdir={target}", file=out, flush=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", VERISCOPE_RUN_ID=run_id,
               VERISCOPE_OUTDIR=run_outdir)
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, env=env)
    except OSError as exc:
        finalize_capsule(target, run_id=run_id, gate_preset=gate_preset, kind=kind,
                         runner_exit_code=None, runner_signal=None, started_ts_utc=started,
                         wrapper_failed=True)
        seal_results(target, "run_finished", run_id=run_id, run_outdir=run_outdir,
                     controls_hash=_summary_controls_hash(target),
                     payload={"run_status": "veriscope_failure", "runner_exit_code": None})
        raise RunnerError(f"cannot start runner {cmd[0]!r}: {exc.strerror}") from None
    lock = threading.Lock()
    with open(target / RUNNER_LOG, "ab") as log, _Forwarder(proc.pid) as forwarder:
        assert proc.stdout is not None
        assert proc.stderr is not None
        secrets = sorted((s.encode() for s in argv_secrets(cmd)), key=len, reverse=True)
        pumps = [threading.Thread(target=_pump, args=(proc.stdout, out, log, lock, secrets),
                                  daemon=True),
                 threading.Thread(target=_pump, args=(proc.stderr, err, log, lock, secrets),
                                  daemon=True)]
        for p in pumps:
            p.start()
        rc: int | None = None
        while rc is None:
            try:
                rc = proc.wait()
            except KeyboardInterrupt:  # pragma: no cover - handler forwards; keep waiting
                continue
        for p in pumps:
            p.join()
    runner_signal = forwarder.forwarded
    if rc < 0:
        runner_signal = signal.Signals(-rc).name
        rc = 128 - rc
    try:
        status = finalize_capsule(target, run_id=run_id, gate_preset=gate_preset, kind=kind,
                                  runner_exit_code=rc, runner_signal=runner_signal,
                                  started_ts_utc=started)
    except Exception as exc:  # the wrapper itself failed: exit 3 per the contract
        print(f"error: veriscope could not finalise {target}: {exc}", file=err, flush=True)
        return EXIT_INVALID if rc != 0 else EXIT_INTERNAL
    code = exit_code_for_status(status)
    seal_results(target, "run_finished", run_id=run_id, run_outdir=run_outdir,
                 controls_hash=_summary_controls_hash(target),
                 payload={"run_status": status, "runner_exit_code": rc,
                          "runner_signal": runner_signal, "wrapper_exit_code": code})
    print(f"veriscope: run_status={status} exit={code} outdir={target}", file=out, flush=True)
    return code
