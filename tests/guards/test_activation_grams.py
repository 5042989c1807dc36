"""The RMT ratios' Gram bookkeeping: a linear layer measured from its input equals the same layer
measured from its output, the input Gram is shared, singular inputs are handled, and non-finite
activations are reported rather than solved."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from guards_support import Loaded

import invarlock_guards.activation_probe as activation_probe
from invarlock_guards.activation_grams import GramQueue, linear_map


def _probe(model: Loaded) -> activation_probe.ActivationProbe:
    return activation_probe._run(model.baseline(), seed=0, scales=None, want_rmt=True)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "mixtral", "bert"])
def test_input_gram_path_equals_the_output_gram_path(
    arch: str, guard_model: Callable[[str], Loaded], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = guard_model(arch)
    linear = sum(
        linear_map(module, torch) is not None
        for module in activation_probe.rmt_modules(model.loaded.model).values()
    )
    assert linear > 0  # the models do have plain linear layers on the fast path
    fast = _probe(model)
    monkeypatch.setattr(activation_probe, "linear_map", lambda *_args: None)
    direct = _probe(model)
    assert fast.rmt.keys() == direct.rmt.keys()
    for name, ratio in direct.rmt.items():
        assert fast.rmt[name].tokens == ratio.tokens
        assert fast.rmt[name].features == ratio.features
        # The direct path solves outputs wider than 64 features by Krylov iteration (tolerance
        # 5e-3 on σ); the input path solves them exactly.
        assert fast.rmt[name].ratio == pytest.approx(ratio.ratio, rel=5e-3)


def _queued(queue: GramQueue, layers: list[tuple[str, Any]], source: torch.Tensor) -> None:
    for name, layer in layers:
        matrix = linear_map(layer, torch)
        assert matrix is not None
        queue.add_linear(name, matrix, source)
    queue.close_batch()
    queue.solve()


def _reference_ratio(output: torch.Tensor) -> float:
    centred = output - output.mean(dim=0, keepdim=True)
    std = centred.pow(2).mean(dim=0).sqrt()
    scaled = centred / torch.where(std > 0, std, torch.ones_like(std))
    scaled = torch.where(std > 0, scaled, torch.zeros_like(scaled))
    rows, cols = output.shape
    sigma = float(torch.linalg.matrix_norm(scaled.double(), ord=2))
    return sigma / (rows**0.5 + cols**0.5)


def test_layers_reading_one_tensor_share_its_gram_and_singular_inputs_are_exact() -> None:
    torch.manual_seed(0)
    source = torch.randn(200, 16)
    source = source - source.mean(dim=1, keepdim=True)  # rows in a hyperplane: a singular Gram
    source[:, 3] = 2.5  # and a constant feature
    layers = [(f"l{i}", torch.nn.Linear(16, width)) for i, width in enumerate((40, 16, 8))]
    queue = GramQueue(seed=0)
    with torch.no_grad():
        _queued(queue, layers, source)
        for name, layer in layers:
            ((ratio, rows, cols),) = queue.ratios[name]
            assert (rows, cols) == (200, layer.out_features)
            assert ratio == pytest.approx(_reference_ratio(layer(source)), rel=1e-4)
    assert not queue.nonfinite


def test_narrow_layers_on_a_wide_input_are_solved_on_their_output_side() -> None:
    """An input wider than the exact-solve size (96 > 64): layers with fewer outputs go to one
    output-sized stack (the narrower zero-padded), the others stay input-sized."""
    torch.manual_seed(1)
    source = torch.randn(400, 96)
    source[:, 5] = -1.0  # a constant feature
    layers = [(f"l{i}", torch.nn.Linear(96, width)) for i, width in enumerate((96, 40, 8))]
    queue = GramQueue(seed=0)
    with torch.no_grad():
        for name, layer in layers:
            matrix = linear_map(layer, torch)
            assert matrix is not None
            queue.add_linear(name, matrix, source)
        queue.close_batch()
        stacks = sorted(
            (tuple(names), int(stack.shape[-1])) for names, stack, _t, _f, _c in queue.ready
        )
        assert stacks == [(("l0",), 96), (("l1", "l2"), 40)]
        queue.solve()
        for name, layer in layers:
            ((ratio, rows, cols),) = queue.ratios[name]
            assert (rows, cols) == (400, layer.out_features)
            # 96 is solved by Krylov iteration, 40 by the certified solve: both to 5e-3 on σ.
            assert ratio == pytest.approx(_reference_ratio(layer(source)), rel=5e-3)
    # An input no wider than 64: every layer on the input side, in one stack and one solve.
    small = GramQueue(seed=0)
    for width in (40, 8):
        matrix = linear_map(torch.nn.Linear(48, width), torch)
        assert matrix is not None
        small.add_linear(f"w{width}", matrix, source[:, :48])
    small.close_batch()
    assert [(names, int(stack.shape[-1])) for names, stack, _t, _f, _c in small.ready] == [
        (("w40", "w8"), 48)
    ]


def test_one_input_gram_for_consecutive_layers_reading_one_tensor() -> None:
    source = torch.randn(64, 8)
    queue = GramQueue(seed=0)
    first, second = torch.nn.Linear(8, 12), torch.nn.Linear(8, 4)
    for name, layer in (("a", first), ("b", second)):
        matrix = linear_map(layer, torch)
        assert matrix is not None
        queue.add_linear(name, matrix, source)
    assert len(queue.inputs) == 1
    queue.add_linear("c", linear_map(first, torch), source.clone())  # another tensor: a new Gram
    assert len(queue.inputs) == 2


def test_non_finite_inputs_are_reported_not_solved() -> None:
    source = torch.randn(64, 8)
    source[5, 2] = float("nan")
    queue = GramQueue(seed=0)
    with torch.no_grad():
        _queued(queue, [("bad", torch.nn.Linear(8, 12))], source)
    assert queue.nonfinite == {"bad"}
    assert "bad" not in queue.ratios


def test_only_plain_linear_layers_take_the_input_path() -> None:
    class Scaled(torch.nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2.0 * super().forward(x)

    assert linear_map(torch.nn.Linear(8, 12), torch) is not None
    assert linear_map(Scaled(8, 12), torch) is None  # a subclass may compute something else
    assert linear_map(torch.nn.Linear(300, 12), torch) is None  # input too wide for a Gram


def test_a_constant_input_gives_the_output_paths_zero_ratio() -> None:
    """A collapsed norm layer feeds a constant: the output has no variance and ratio 0, and the
    input path must not turn the Cholesky ridge into variance."""
    source = torch.full((64, 8), 0.75)
    source[:, 0] = torch.linspace(-1.0, 1.0, 64)  # one live feature...
    layer = torch.nn.Linear(8, 12)
    with torch.no_grad():
        layer.weight[:6, 0] = 0.0  # ...which six outputs do not read: they are constant
        queue = GramQueue(seed=0)
        _queued(queue, [("partial", layer)], source)
        ((ratio, _rows, _cols),) = queue.ratios["partial"]
        assert ratio == pytest.approx(_reference_ratio(layer(source)), rel=1e-4)
        queue = GramQueue(seed=0)
        _queued(queue, [("dead", layer)], torch.full((64, 8), 0.75))
        ((ratio, _rows, _cols),) = queue.ratios["dead"]
        assert ratio == 0.0


def test_a_float16_overflow_is_reported_on_the_input_path() -> None:
    """float16 outputs can overflow where the float32 input path cannot: the hook checks them."""
    layer = torch.nn.Linear(8, 12).half()
    with torch.no_grad():
        layer.weight.fill_(1000.0)
        source = torch.full((4, 8), 100.0, dtype=torch.float16)  # 8 x 1e5: beyond float16's range
        output = layer(source)
        assert not bool(torch.isfinite(output).all())
        recorder = activation_probe._Recorder(GramQueue(seed=0), active=True)
        hook = activation_probe._rmt_hook(recorder, "big", linear_map(layer, torch), torch)
        hook(layer, (source,), output)
    assert recorder.error is None
    assert recorder.queue.nonfinite == {"big"}
    assert not recorder.queue.linear


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_wide_output_is_measured_without_a_standardised_copy(dtype: torch.dtype) -> None:
    """Outputs wider than a Gram (> 256 features) are iterated on directly: the ratio equals the
    reference SVD of the standardised output, constant columns included, and a NaN is reported."""
    generator = torch.Generator().manual_seed(0)
    output = torch.randn(3, 100, 300, generator=generator)  # 300 tokens x 300 features
    output += torch.randn(3, 100, 4, generator=generator) @ torch.randn(4, 300, generator=generator)
    output[..., :5] = 2.0  # constant features: no variance, no direction
    output = output.to(dtype)
    queue = GramQueue(seed=0)
    queue.add_output("wide", output)
    assert not queue.outputs  # measured at once, nothing queued
    ((ratio, rows, cols),) = queue.ratios["wide"]
    assert (rows, cols) == (300, 300)
    reference = _reference_ratio(output.reshape(-1, 300).float())
    assert ratio == pytest.approx(reference, rel=5e-3)
    assert ratio <= reference * (1 + 1e-5)
    broken = output.clone()
    broken[1, 7, 42] = float("nan")
    queue.add_output("broken", broken)
    assert queue.nonfinite == {"broken"}
    assert "broken" not in queue.ratios


def test_queues_solved_together_get_their_own_results() -> None:
    """A baseline's and a subject's problems share one set of stacked solves; each queue gets its
    own ratios (same names included), equal to solving it alone within the RMT tolerance."""
    torch.manual_seed(3)
    sources = [torch.randn(300, 48), torch.randn(300, 48) * 3.0]
    layers = [(f"l{i}", torch.nn.Linear(48, width)) for i, width in enumerate((48, 40, 200))]
    alone, together = [], []
    with torch.no_grad():
        for source in sources:
            for queues in (alone, together):
                queue = GramQueue(seed=0)
                for name, layer in layers:
                    matrix = linear_map(layer, torch)
                    assert matrix is not None
                    queue.add_linear(name, matrix, source)
                queue.add_output("wide", torch.nn.functional.gelu(source @ torch.randn(48, 20)))
                queue.close_batch()
                queues.append(queue)
        for queue in alone:
            queue.solve()
        together[0].solve(together[1], together[0])  # a repeated queue is solved once
    for single, joint, source in zip(alone, together, sources):
        assert not joint.ready
        assert joint.ratios.keys() == single.ratios.keys() == {"l0", "l1", "l2", "wide"}
        for name, layer in layers:
            ((ratio, rows, cols),) = joint.ratios[name]
            assert (rows, cols) == (300, layer.out_features)
            assert ratio == pytest.approx(single.ratios[name][0][0], rel=5e-3)
            assert ratio == pytest.approx(_reference_ratio(layer(source).detach()), rel=5e-3)
    assert together[0].ratios["l0"] != together[1].ratios["l0"]  # results went to their owners
    with pytest.raises(ValueError, match="share one seed"):
        GramQueue(seed=0).solve(GramQueue(seed=1))
