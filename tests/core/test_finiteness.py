"""``nonfinite_counts`` finds exactly the tensors holding NaN/Inf, whatever their dtype and even
when finite values overflow a tensor's sum."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from invarlock_core.evaluation.finiteness import nonfinite_counts

_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
_SPECIAL = [math.nan, math.inf, -math.inf]


@st.composite
def _tensors(draw: st.DrawFn) -> list[tuple[str, torch.Tensor]]:
    named = []
    for index in range(draw(st.integers(1, 6))):
        dtype = draw(st.sampled_from(_DTYPES))
        size = draw(st.integers(1, 40))
        # Large finite values make the sum overflow without any NaN/Inf in the tensor.
        big = torch.finfo(dtype).max / 2
        values = draw(
            st.lists(st.sampled_from([0.0, 1.0, -3.5, big]), min_size=size, max_size=size)
        )
        tensor = torch.tensor(values, dtype=dtype)
        for position in draw(st.lists(st.integers(0, size - 1), max_size=3, unique=True)):
            tensor[position] = draw(st.sampled_from(_SPECIAL))
        named.append((f"t{index}", tensor))
    return named


@settings(max_examples=150, deadline=None)
@given(_tensors())
def test_counts_match_an_elementwise_check(named: list[tuple[str, torch.Tensor]]) -> None:
    expected = {
        name: int((~torch.isfinite(tensor)).sum())
        for name, tensor in named
        if not bool(torch.isfinite(tensor).all())
    }
    assert nonfinite_counts(named) == expected
    assert list(nonfinite_counts(named)) == [n for n, _t in named if n in expected]  # in order


def test_integer_tensors_are_ignored() -> None:
    assert (
        nonfinite_counts([("ids", torch.arange(5)), ("mask", torch.ones(3, dtype=torch.bool))])
        == {}
    )
