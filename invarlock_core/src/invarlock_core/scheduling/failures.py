"""Failure classes and retry decisions.

A failed attempt is classified from its exit status and the tail of its log, in the order
``oom`` > ``permanent`` > ``transient`` > ``unknown``:

* ``oom``: "CUDA out of memory", ``OutOfMemoryError``, allocation failures, or a SIGKILL the
  scheduler did not send (the kernel's OOM killer);
* ``permanent``: import errors, missing files or commands, a full disk, usage errors (exit 2),
  commands that cannot run (exit 126/127): retrying cannot help, so they never are;
* ``transient``: connection errors, timeouts (the task's own or ours);
* ``unknown``: anything else.

Retries wait ``base · 2^k`` seconds (k = 0 for the first retry) ± jitter, capped; an OOM retry halves
the batch size (minimum 1) and sequence length (minimum 128).
"""

from __future__ import annotations

import enum
import random
import re
import signal

import attrs

from invarlock_core.scheduling.knobs import SchedulingKnobs

__all__ = ["FailureClass", "RetryDecision", "backoff_seconds", "classify_failure", "decide_retry"]


class FailureClass(enum.StrEnum):
    OOM = "oom"
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    UNKNOWN = "unknown"
    DEPENDENCY = "dependency"
    """Not a failure of the task itself: a dependency failed and the task was cancelled."""


_OOM = re.compile(
    r"CUDA out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED|"
    r"Cannot allocate memory|\bMemoryError\b|out of memory",
    re.IGNORECASE,
)
_PERMANENT = re.compile(
    r"ModuleNotFoundError|ImportError|No space left on device|FileNotFoundError|"
    r"PermissionError|SyntaxError|command not found|ModelLoadError|SchemaError",
)
_TRANSIENT = re.compile(
    r"ConnectionError|Connection reset|Connection refused|TimeoutError|timed out|"
    r"Temporary failure in name resolution|Resource temporarily unavailable|HTTP Error 5\d\d|"
    r"NCCL error|BrokenPipeError",
    re.IGNORECASE,
)
_PERMANENT_CODES = frozenset({2, 126, 127})


def classify_failure(
    returncode: int | None,
    log_tail: str,
    *,
    timed_out: bool = False,
    killed_by_scheduler: bool = False,
) -> FailureClass:
    """The class of one failed attempt (``returncode`` < 0 means killed by that signal)."""
    if _OOM.search(log_tail) or (returncode == -signal.SIGKILL and not killed_by_scheduler):
        return FailureClass.OOM
    if not timed_out and (_PERMANENT.search(log_tail) or returncode in _PERMANENT_CODES):
        return FailureClass.PERMANENT
    if timed_out or _TRANSIENT.search(log_tail):
        return FailureClass.TRANSIENT
    return FailureClass.UNKNOWN


@attrs.frozen
class RetryDecision:
    """Whether to retry, after how long, and with which batch size and sequence length."""

    retry: bool
    delay_seconds: float = 0.0
    batch_size: int | None = None
    seq_len: int | None = None


def backoff_seconds(
    retry_index: int, knobs: SchedulingKnobs, rng: random.Random | None = None
) -> float:
    """``min(cap, base · 2^retry_index)`` scaled by a uniform factor in ``[1 − jitter, 1 + jitter]``
    (the result never exceeds the cap)."""
    delay = min(knobs.retry_backoff_max, knobs.retry_backoff_base * (2.0 ** max(0, retry_index)))
    draw = (rng or random).uniform(-knobs.retry_jitter, knobs.retry_jitter)
    return min(knobs.retry_backoff_max, max(0.0, delay * (1.0 + draw)))


def decide_retry(
    failure: FailureClass,
    failures_so_far: int,
    knobs: SchedulingKnobs,
    *,
    max_retries: int | None = None,
    batch_size: int | None = None,
    seq_len: int | None = None,
    rng: random.Random | None = None,
) -> RetryDecision:
    """What to do after the ``failures_so_far``-th failure (1 for the first) of a task."""
    limit = knobs.task_max_retries if max_retries is None else max_retries
    if failure in (FailureClass.PERMANENT, FailureClass.DEPENDENCY) or failures_so_far > limit:
        return RetryDecision(False, batch_size=batch_size, seq_len=seq_len)
    delay = backoff_seconds(failures_so_far - 1, knobs, rng)
    if failure is FailureClass.OOM:
        batch_size = max(1, (batch_size or 32) // 2)
        seq_len = max(128, (seq_len or 512) // 2)
    return RetryDecision(True, delay, batch_size, seq_len)
