"""Deterministic evaluation windows: which tokens baseline and subject are scored on.

The dataset's texts are tokenized without special tokens and joined into one stream, separated by
the tokenizer's EOS (or SEP) token when it has one. Candidate windows of ``seq_len`` tokens start
every ``stride`` tokens. A seeded shuffle (PCG64 ``random()`` keys, stable across NumPy versions)
orders the candidates; windows are taken greedily, skipping any that overlaps a window already
taken, first ``preview`` windows and then ``final`` windows, each set sorted by position.

Every window has an id (``w<start offset>``) and a token digest (SHA-256 of its ids as
little-endian uint32); the plan digest covers the shape, the seed and every (id, digest) pair, so
two reports with the same plan digest were scored on exactly the same tokens. Reports record the
digests, never the token ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from invarlock_core.canonical import canonical_digest, prefixed, sha256_hex
from invarlock_core.errors import DatasetError, UsageError

__all__ = ["Window", "WindowPlan", "plan_windows", "token_digest", "tokenize_stream"]

IdArray = npt.NDArray[np.int64]


@attrs.frozen
class Window:
    """One evaluation window: its id, start offset in the token stream and token digest."""

    id: str
    start: int
    digest: str


@attrs.frozen(eq=False)
class WindowPlan:
    """Preview and final windows plus their token ids (``[windows, seq_len]`` arrays)."""

    seq_len: int
    stride: int
    seed: int
    stream_tokens: int
    candidates: int
    preview: tuple[Window, ...]
    final: tuple[Window, ...]
    preview_ids: IdArray
    final_ids: IdArray

    @property
    def digest(self) -> str:
        """``sha256:`` digest of the plan (shape, seed, every window id and token digest)."""
        return plan_digest(self.describe())

    def describe(self) -> dict[str, Any]:
        """The JSON form recorded in reports (no token ids)."""
        return {
            "seq_len": self.seq_len,
            "stride": self.stride,
            "seed": self.seed,
            "stream_tokens": self.stream_tokens,
            "candidates": self.candidates,
            "preview": [{"id": w.id, "start": w.start, "digest": w.digest} for w in self.preview],
            "final": [{"id": w.id, "start": w.start, "digest": w.digest} for w in self.final],
        }


def plan_digest(described: dict[str, Any]) -> str:
    """The digest of a described plan; :mod:`invarlock_core.report.verification` recomputes it from a report."""
    core = {
        "seq_len": described["seq_len"],
        "stride": described["stride"],
        "seed": described["seed"],
        "preview": [[w["id"], w["digest"]] for w in described["preview"]],
        "final": [[w["id"], w["digest"]] for w in described["final"]],
    }
    return prefixed(canonical_digest(core))


def token_digest(ids: Sequence[int] | IdArray) -> str:
    """``sha256:`` of the token ids as little-endian uint32."""
    return prefixed(sha256_hex(np.asarray(ids, dtype="<u4").tobytes()))


def _separator(tokenizer: Any) -> int | None:
    for attr in ("eos_token_id", "sep_token_id"):
        value = getattr(tokenizer, attr, None)
        if isinstance(value, int):
            return value
    return None


def tokenize_stream(tokenizer: Any, texts: Sequence[str]) -> IdArray:
    """Tokenize ``texts`` (no special tokens) into one stream joined by EOS/SEP."""
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    sep = _separator(tokenizer)
    stream: list[int] = []
    for ids in encoded:
        if not ids:
            continue
        if stream and sep is not None:
            stream.append(sep)
        stream.extend(ids)
    return np.asarray(stream, dtype=np.int64)


def plan_windows(
    stream: IdArray,
    *,
    seq_len: int,
    stride: int | None = None,
    preview: int,
    final: int,
    seed: int = 0,
) -> WindowPlan:
    """Choose ``preview`` + ``final`` non-overlapping windows of ``seq_len`` tokens."""
    stride = seq_len if stride is None else stride
    if seq_len < 2:
        raise UsageError(f"--seq-len must be at least 2, got {seq_len}")
    if stride < 1:
        raise UsageError(f"--stride must be at least 1, got {stride}")
    if preview < 0 or final < 1:
        raise UsageError("--final-windows must be at least 1 and --preview-windows at least 0")
    n = int(stream.size)
    if n < seq_len:
        raise DatasetError(
            f"the dataset has {n} tokens, fewer than one window of --seq-len {seq_len}"
        )
    starts = np.arange(0, n - seq_len + 1, stride, dtype=np.int64)
    rng = np.random.Generator(np.random.PCG64(seed))
    order = np.argsort(rng.random(starts.size), kind="stable")
    taken = np.zeros(n, dtype=bool)
    chosen: list[int] = []
    wanted = preview + final
    for index in order:
        start = int(starts[index])
        if taken[start : start + seq_len].any():
            continue
        taken[start : start + seq_len] = True
        chosen.append(start)
        if len(chosen) == wanted:
            break
    if len(chosen) < wanted:
        raise DatasetError(
            f"the dataset yields only {len(chosen)} non-overlapping windows of {seq_len} tokens "
            f"({n} tokens); {preview} preview + {final} final requested: lower the window "
            "counts or --seq-len, or use a larger dataset"
        )

    def build(group: list[int]) -> tuple[tuple[Window, ...], IdArray]:
        ordered = sorted(group)
        ids = (
            np.stack([stream[s : s + seq_len] for s in ordered])
            if ordered
            else np.zeros((0, seq_len), dtype=np.int64)
        )
        windows = tuple(
            Window(id=f"w{s}", start=s, digest=token_digest(row))
            for s, row in zip(ordered, ids)
        )
        return windows, ids

    preview_windows, preview_ids = build(chosen[:preview])
    final_windows, final_ids = build(chosen[preview:])
    return WindowPlan(
        seq_len=seq_len,
        stride=stride,
        seed=seed,
        stream_tokens=n,
        candidates=int(starts.size),
        preview=preview_windows,
        final=final_windows,
        preview_ids=preview_ids,
        final_ids=final_ids,
    )
