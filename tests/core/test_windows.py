"""Deterministic window planning: same inputs, same windows; never overlapping; digests pair."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invarlock_core.errors import DatasetError, UsageError
from invarlock_core.evaluation.windows import (
    plan_digest,
    plan_windows,
    token_digest,
    tokenize_stream,
)


def _stream(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 500, n).astype(np.int64)


@given(
    extra=st.integers(0, 500),
    seq_len=st.integers(8, 64),
    stride_div=st.integers(1, 4),
    preview=st.integers(0, 4),
    final=st.integers(1, 6),
    seed=st.integers(0, 10_000),
)
@settings(max_examples=60, deadline=None)
def test_plans_are_deterministic_disjoint_and_digested(
    extra: int, seq_len: int, stride_div: int, preview: int, final: int, seed: int
) -> None:
    # Greedy placement always succeeds when every window may block up to 2 * seq_len tokens.
    n = (preview + final) * 2 * seq_len + seq_len + extra
    stream = _stream(n, seed)
    stride = max(1, seq_len // stride_div)
    kwargs = {"seq_len": seq_len, "stride": stride, "preview": preview, "final": final, "seed": seed}
    plan = plan_windows(stream, **kwargs)  # type: ignore[arg-type]
    again = plan_windows(stream.copy(), **kwargs)  # type: ignore[arg-type]
    assert plan.describe() == again.describe()
    assert plan.digest == again.digest
    assert len(plan.preview) == preview
    assert len(plan.final) == final
    covered = np.zeros(n, dtype=int)
    for windows, ids in ((plan.preview, plan.preview_ids), (plan.final, plan.final_ids)):
        assert [w.start for w in windows] == sorted(w.start for w in windows)
        for window, row in zip(windows, ids):
            assert window.id == f"w{window.start}"
            assert np.array_equal(row, stream[window.start : window.start + seq_len])
            assert window.digest == token_digest(row)
            covered[window.start : window.start + seq_len] += 1
    assert covered.max() <= 1  # preview and final windows never share a token
    assert plan_digest(plan.describe()) == plan.digest


def test_seed_changes_the_plan_and_token_changes_the_digest() -> None:
    stream = _stream(5000)
    a = plan_windows(stream, seq_len=32, preview=2, final=8, seed=0)
    b = plan_windows(stream, seq_len=32, preview=2, final=8, seed=1)
    assert a.digest != b.digest
    changed = stream.copy()
    first = a.final[0].start
    changed[first + 3] = (changed[first + 3] + 1) % 500
    c = plan_windows(changed, seq_len=32, preview=2, final=8, seed=0)
    assert [w.id for w in c.final] == [w.id for w in a.final]
    assert c.final[0].digest != a.final[0].digest
    assert c.digest != a.digest


def test_too_few_tokens_is_a_dataset_error_naming_the_numbers() -> None:
    with pytest.raises(DatasetError, match=r"only 3 non-overlapping windows of 100 tokens"):
        plan_windows(_stream(350), seq_len=100, preview=1, final=4)
    with pytest.raises(DatasetError, match="fewer than one window"):
        plan_windows(_stream(10), seq_len=100, preview=0, final=1)


def test_bad_shapes_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="seq-len"):
        plan_windows(_stream(100), seq_len=1, preview=0, final=1)
    with pytest.raises(UsageError, match="final-windows"):
        plan_windows(_stream(100), seq_len=8, preview=0, final=0)


def test_tokenize_stream_joins_texts_with_eos(tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir("gpt2"))
    stream = tokenize_stream(tok, ["hello world", "", "rivers run"])
    first = tok("hello world", add_special_tokens=False)["input_ids"]
    second = tok("rivers run", add_special_tokens=False)["input_ids"]
    assert stream.tolist() == [*first, tok.eos_token_id, *second]
