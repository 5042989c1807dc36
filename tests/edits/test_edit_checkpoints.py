"""Built-in edits on real tiny checkpoints of every supported architecture."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from edit_helpers import changed_tensors, read_tensors, tensor_bytes

from invarlock_core.errors import UsageError
from invarlock_core.families import classify, layer_index
from invarlock_core.models import checkpoint_files_digest
from invarlock_edits import check_edit_output
from invarlock_edits.safetensors_stream import PlannedTensor, write_safetensors

Apply = Callable[..., tuple[Path, dict[str, Any]]]
ARCHS = ["gpt2", "llama", "qwen2", "mixtral", "bert"]
STRESS = [
    "quant_rtn:4:32:all",
    "fp8_quant:e5m2:all",
    "magnitude_prune:0.5:all",
    "lowrank_svd:8:all",
]
BLOCK_FAMILIES = {"ffn", "expert_ffn", "attn", "router"}


def _changed_elements(before: torch.Tensor, after: torch.Tensor) -> int:
    size = before.element_size()
    return int(
        (tensor_bytes(before).reshape(-1, size) != tensor_bytes(after).reshape(-1, size))
        .any(dim=1)
        .sum()
    )


def _load(directory: Path, arch: str) -> tuple[Any, dict[str, Any]]:
    import transformers

    cls = transformers.AutoModelForMaskedLM if arch == "bert" else transformers.AutoModelForCausalLM
    model, info = cls.from_pretrained(str(directory), output_loading_info=True)
    return model.eval(), {k: v for k, v in info.items() if v}


def _logits(model: Any) -> torch.Tensor:
    ids = torch.arange(5, 37).reshape(2, 16)
    with torch.no_grad():
        result: torch.Tensor = model(input_ids=ids).logits
    return result


def test_streaming_writer_round_trips_every_dtype(tmp_path: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    tensors = {
        "a": torch.randn(3, 5),
        "b": torch.randn(7).to(torch.bfloat16),
        "c": torch.randn(2, 2, 2).to(torch.float16),
        "d": torch.randn(4, 4).to(torch.float8_e4m3fn),
        "e": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        "f": torch.tensor([True, False, True]),
        "g": torch.tensor(3.5),
        "h": torch.zeros(0, 4),
    }
    from invarlock_edits.safetensors_stream import safetensors_dtype

    entries = [
        PlannedTensor(n, safetensors_dtype(t.dtype), tuple(t.shape)) for n, t in tensors.items()
    ]
    digest = write_safetensors(
        tmp_path / "x.safetensors", entries, tensors.__getitem__, metadata={"format": "pt"}
    )
    loaded = load_file(str(tmp_path / "x.safetensors"))
    assert set(loaded) == set(tensors)
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype
        assert loaded[name].shape == tensor.shape
        assert torch.equal(tensor_bytes(loaded[name]), tensor_bytes(tensor))
    with safe_open(str(tmp_path / "x.safetensors"), framework="pt") as handle:
        assert handle.metadata() == {"format": "pt"}
    import hashlib

    assert digest == hashlib.sha256((tmp_path / "x.safetensors").read_bytes()).hexdigest()


def test_streaming_writer_refuses_a_tensor_that_does_not_match_its_plan(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="planned F32"):
        write_safetensors(
            tmp_path / "x.safetensors",
            [PlannedTensor("a", "F32", (2, 2))],
            lambda _: torch.zeros(3),
        )


@pytest.mark.parametrize("spec", STRESS)
@pytest.mark.parametrize("arch", ARCHS)
def test_stress_edit_changes_exactly_its_scope_and_loads(
    arch: str, spec: str, apply: Apply, tiny_model_dir: Callable[[str], Path]
) -> None:
    baseline = tiny_model_dir(arch)
    out, metadata = apply(baseline, spec)
    before, after = read_tensors(baseline), read_tensors(out)
    changed = changed_tensors(before, after)
    in_scope = {
        name
        for name, t in before.items()
        if t.ndim >= 2 and not name.endswith(".bias") and classify(name) in BLOCK_FAMILIES
    }
    coverage = metadata["coverage"]
    assert set(coverage["declared"]) == in_scope
    assert set(coverage["changed"]) == changed
    assert changed <= in_scope
    if spec.startswith("lowrank"):  # matrices already of rank <= 8 (MoE routers) stay as they are
        assert changed == {n for n in in_scope if min(before[n].shape[-2:]) > 8}
    else:
        assert changed == in_scope
    assert coverage["elements_changed"] == sum(
        _changed_elements(before[n], after[n]) for n in changed
    )
    # Non-weight files are copied byte for byte; the metadata's digests check out.
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (out / name).read_bytes() == (baseline / name).read_bytes()
    assert metadata["input"]["digest"] == checkpoint_files_digest(baseline)[0]
    assert check_edit_output(out) == []
    assert metadata["artifact_class"] == "validation_subject_checkpoint"
    assert metadata["deployment"]["deployable"] is False
    model, problems = _load(out, arch)
    assert problems == {}
    assert bool(torch.isfinite(_logits(model)).all())
    if spec.startswith("magnitude_prune"):
        for name in changed:
            assert int((after[name] == 0).sum()) == round(0.5 * after[name].numel())
    if spec.startswith("lowrank"):
        for name in changed:
            for matrix in after[name].reshape(-1, *after[name].shape[-2:]):
                assert int(torch.linalg.matrix_rank(matrix.float())) <= 8


@pytest.mark.parametrize(
    "spec",
    [
        "quant_rtn:4:32:ffn",
        "magnitude_prune:0.5:ffn",
        "lowrank_svd:4:ffn",
        "fp8_quant:e4m3fn:router",
    ],
)
def test_fused_moe_expert_tensors_are_edited_as_batches_of_matrices(
    spec: str, apply: Apply, fused_mixtral_dir: Path
) -> None:
    out, metadata = apply(fused_mixtral_dir, spec)
    before, after = read_tensors(fused_mixtral_dir), read_tensors(out)
    changed = changed_tensors(before, after)
    if spec.endswith("router"):
        assert changed == {n for n in before if n.endswith("mlp.gate.weight")}
    else:
        assert changed == {n for n in before if ".mlp.experts." in n}
        assert all(after[n].ndim == 3 for n in changed)
    if spec.startswith("magnitude_prune"):
        for name in changed:
            assert int((after[name] == 0).sum()) == round(0.5 * after[name].numel())
    if spec.startswith("lowrank"):
        for name in changed:
            for matrix in after[name]:
                assert int(torch.linalg.matrix_rank(matrix)) <= 4
    if spec.startswith("quant_rtn"):
        # per expert, per row, per group of 32 inputs: at most 2^4 - 1 distinct symmetric levels
        tensor = after["model.layers.0.mlp.experts.down_proj"]
        groups = tensor.reshape(-1, 32)
        assert max(torch.unique(g).numel() for g in groups) <= 15
    assert metadata["coverage"]["families"] == (
        {"router": 2} if spec.endswith("router") else {"expert_ffn": 4}
    )
    model, problems = _load(out, "mixtral")
    assert problems == {}
    assert bool(torch.isfinite(_logits(model)).all())


def test_gpt2_conv1d_weights_are_grouped_along_their_input_axis(
    apply: Apply, tiny_model_dir: Callable[[str], Path]
) -> None:
    baseline = tiny_model_dir("gpt2")
    out, _ = apply(baseline, "quant_rtn:2:16:ffn")
    after = read_tensors(out)["transformer.h.0.mlp.c_fc.weight"]  # Conv1D: [in, out]
    columns = after.T.reshape(-1, 16)  # groups of 16 inputs for each output unit
    assert max(torch.unique(g).numel() for g in columns) <= 3  # symmetric 2-bit: -1, 0, +1 steps


def test_tied_weights_stored_twice_are_edited_once(apply: Apply, tied_twice_gpt2_dir: Path) -> None:
    out, metadata = apply(tied_twice_gpt2_dir, "quant_rtn:4:32:embed")
    after = read_tensors(out)
    assert torch.equal(after["lm_head.weight"], after["transformer.wte.weight"])
    assert not torch.equal(
        after["transformer.wte.weight"], read_tensors(tied_twice_gpt2_dir)["transformer.wte.weight"]
    )
    assert metadata["coverage"]["tied"] == {"lm_head.weight": "transformer.wte.weight"}
    assert "lm_head.weight" in metadata["coverage"]["changed"]


def test_a_tied_pair_runs_the_edit_function_once(tied_twice_gpt2_dir: Path, tmp_path: Path) -> None:
    from invarlock_core.editing import EditSpec
    from invarlock_edits import StreamingEdit, map_tensors, scope_param

    calls: list[str] = []

    def planner(checkpoint: Any, params: Any, seed: int) -> Any:
        def bump(name: str, tensor: torch.Tensor) -> torch.Tensor:
            calls.append(name)
            return tensor.add_(1.0)

        return map_tensors(checkpoint, params["scope"].select(checkpoint), bump)

    edit = StreamingEdit(
        "bump", "add one", "validation_subject_checkpoint", (scope_param("embed"),), planner
    )
    out = tmp_path / "bumped"
    out.mkdir()
    edit.apply(EditSpec.parse("bump:embed"), baseline=tied_twice_gpt2_dir, out=out, seed=0)
    assert calls.count("transformer.wte.weight") == 1
    assert "lm_head.weight" not in calls
    after = read_tensors(out)
    assert torch.equal(after["lm_head.weight"], after["transformer.wte.weight"])


def test_sharded_checkpoints_keep_their_shards_and_index(
    apply: Apply, sharded_llama_dir: Path
) -> None:
    out, metadata = apply(sharded_llama_dir, "magnitude_prune:0.5:all")
    source_index = json.loads((sharded_llama_dir / "model.safetensors.index.json").read_text())
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert index["weight_map"] == source_index["weight_map"]
    shards = sorted(p.name for p in out.glob("*.safetensors"))
    assert shards == sorted(p.name for p in sharded_llama_dir.glob("*.safetensors"))
    assert len(shards) > 1
    assert index["metadata"]["total_size"] == sum(
        t.numel() * t.element_size() for t in read_tensors(out).values()
    )
    assert set(metadata["output"]["files"]) >= {*shards, "model.safetensors.index.json"}
    _model, problems = _load(out, "llama")
    assert problems == {}


def test_bfloat16_checkpoints_stay_bfloat16(
    apply: Apply, tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    import shutil

    from safetensors.torch import save_file

    source = tiny_model_dir("qwen2")
    bf16 = tmp_path / "bf16"
    shutil.copytree(source, bf16)
    state = {k: v.to(torch.bfloat16) for k, v in read_tensors(source).items()}
    save_file(state, str(bf16 / "model.safetensors"), metadata={"format": "pt"})
    out, metadata = apply(bf16, "quant_rtn:4:32:all")
    after = read_tensors(out)
    assert {t.dtype for t in after.values()} == {torch.bfloat16}
    assert metadata["coverage"]["tensors_changed"] > 0


def test_layer_filters_limit_the_edit(apply: Apply, tiny_model_dir: Callable[[str], Path]) -> None:
    baseline = tiny_model_dir("llama")
    out, metadata = apply(baseline, "quant_rtn:4:32:ffn@layer=1")
    changed = changed_tensors(read_tensors(baseline), read_tensors(out))
    assert changed
    assert all(layer_index(n) == 1 and ".mlp." in n for n in changed)
    assert metadata["coverage"]["layers"] == [1]
    assert metadata["coverage"]["scope"] == "ffn@layer=1"


def test_randomized_edits_are_deterministic_with_a_seed(
    apply: Apply, tiny_model_dir: Callable[[str], Path]
) -> None:
    baseline = tiny_model_dir("llama")
    first = apply(baseline, "lowrank_svd:4:ffn", seed=7)[1]["output"]["files"]["model.safetensors"]
    again = apply(baseline, "lowrank_svd:4:ffn", seed=7)[1]["output"]["files"]["model.safetensors"]
    other = apply(baseline, "lowrank_svd:4:ffn:power_iters=0:oversample=0", seed=8)[1]["output"][
        "files"
    ]["model.safetensors"]
    assert first == again != other


def test_a_failing_edit_leaves_nothing_behind(
    apply: Apply, tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    before = set(tmp_path.iterdir())
    with pytest.raises(UsageError, match="the model has 2 layers"):
        apply(tiny_model_dir("llama"), "quant_rtn:4:32:ffn@layer=31")
    assert set(tmp_path.iterdir()) == before  # neither the output nor a hidden staging directory
    with pytest.raises(UsageError, match="selects no tensors"):
        apply(tiny_model_dir("llama"), "quant_rtn:4:32:router")
    assert set(tmp_path.iterdir()) == before


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(
    "spec", ["quant_rtn:4:32:all", "magnitude_prune:0.5:all", "fp8_quant:e5m2:all"]
)
def test_edits_on_cuda_match_cpu(
    spec: str, apply: Apply, tiny_model_dir: Callable[[str], Path]
) -> None:
    baseline = tiny_model_dir("llama")
    cpu_out, _ = apply(baseline, spec, device="cpu")
    cuda_out, metadata = apply(baseline, spec, device="cuda")
    cpu, cuda = read_tensors(cpu_out), read_tensors(cuda_out)
    for name in metadata["coverage"]["changed"]:
        assert torch.allclose(cpu[name], cuda[name], rtol=1e-5, atol=1e-6)
