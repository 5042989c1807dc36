"""Fixtures for the edits tests: apply an edit into a temporary directory, read tensors back."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from edit_helpers import copy_non_weight_files


@pytest.fixture
def apply(tmp_path: Path) -> Callable[..., tuple[Path, dict[str, Any]]]:
    """``apply(baseline, "quant_rtn:4:32:all", seed=0)`` -> (output dir, metadata), in-process."""
    from invarlock_core.editing import EditSpec
    from invarlock_core.plugins import get_registries
    from invarlock_edits import apply_edit

    edits = get_registries().edits
    counter = iter(range(1_000_000))

    def run(
        baseline: Path, spec_text: str, *, seed: int = 0, **options: Any
    ) -> tuple[Path, dict[str, Any]]:
        spec = EditSpec.parse(spec_text)
        out = tmp_path / f"edit-{next(counter)}"
        metadata = apply_edit(
            edits.get(spec.name), spec, baseline=baseline, out=out, seed=seed, **options
        )
        return out, metadata

    return run


@pytest.fixture(scope="session")
def fused_mixtral_dir(
    tiny_model_dir: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The tiny Mixtral re-stored in transformers 5's fused layout: 3-D ``mlp.experts.gate_up_proj``
    [E, 2I, H] and ``mlp.experts.down_proj`` [E, H, I], router ``mlp.gate.weight``."""
    import torch
    from safetensors.torch import load_file, save_file

    source = tiny_model_dir("mixtral")
    target = tmp_path_factory.mktemp("fused-mixtral")
    copy_non_weight_files(source, target)
    state = load_file(str(source / "model.safetensors"))
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    fused = {k: v for k, v in state.items() if ".block_sparse_moe." not in k}
    for layer in range(config["num_hidden_layers"]):
        prefix = f"model.layers.{layer}.block_sparse_moe"
        experts = range(config["num_local_experts"])
        w1 = torch.stack([state[f"{prefix}.experts.{e}.w1.weight"] for e in experts])
        w3 = torch.stack([state[f"{prefix}.experts.{e}.w3.weight"] for e in experts])
        w2 = torch.stack([state[f"{prefix}.experts.{e}.w2.weight"] for e in experts])
        fused[f"model.layers.{layer}.mlp.experts.gate_up_proj"] = torch.cat(
            [w1, w3], dim=1
        ).contiguous()
        fused[f"model.layers.{layer}.mlp.experts.down_proj"] = w2.contiguous()
        fused[f"model.layers.{layer}.mlp.gate.weight"] = state[f"{prefix}.gate.weight"]
    save_file(fused, str(target / "model.safetensors"), metadata={"format": "pt"})
    return target


@pytest.fixture(scope="session")
def tied_twice_gpt2_dir(
    tiny_model_dir: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The tiny GPT-2 with its tied output head stored as well (as some checkpoints do)."""
    from safetensors.torch import load_file, save_file

    source = tiny_model_dir("gpt2")
    target = tmp_path_factory.mktemp("tied-twice-gpt2")
    copy_non_weight_files(source, target)
    state = load_file(str(source / "model.safetensors"))
    state["lm_head.weight"] = state["transformer.wte.weight"].clone()
    save_file(state, str(target / "model.safetensors"), metadata={"format": "pt"})
    return target


@pytest.fixture(scope="session")
def sharded_llama_dir(
    tiny_model_dir: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The tiny LLaMA saved by transformers in several shards with a ``model.safetensors.index.json``."""
    import shutil

    import transformers

    source = tiny_model_dir("llama")
    target = tmp_path_factory.mktemp("sharded-llama")
    model = transformers.AutoModelForCausalLM.from_pretrained(source)
    model.save_pretrained(str(target), max_shard_size="150KB")
    for file in source.iterdir():
        if file.name.startswith("tokenizer"):
            shutil.copy(file, target / file.name)
    assert (target / "model.safetensors.index.json").is_file()
    return target
