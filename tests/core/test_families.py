"""The module-family classifier across architectures, on real parameter names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from invarlock_core.families import FAMILIES, classify, layer_index

CASES = {
    # GPT-2
    "transformer.wte.weight": "embed",
    "transformer.wpe.weight": "embed",
    "transformer.h.0.ln_1.weight": "norm",
    "transformer.h.0.attn.c_attn.weight": "attn",
    "transformer.h.0.attn.c_proj.bias": "attn",
    "transformer.h.3.mlp.c_fc.weight": "ffn",
    "transformer.h.3.mlp.c_proj.weight": "ffn",
    "transformer.ln_f.weight": "norm",
    "lm_head.weight": "embed",
    # LLaMA / Mistral / Qwen2 / Qwen3
    "model.embed_tokens.weight": "embed",
    "model.layers.7.self_attn.q_proj.weight": "attn",
    "model.layers.7.self_attn.o_proj.weight": "attn",
    "model.layers.7.self_attn.q_norm.weight": "norm",
    "model.layers.7.mlp.gate_proj.weight": "ffn",
    "model.layers.7.mlp.down_proj.weight": "ffn",
    "model.layers.7.input_layernorm.weight": "norm",
    "model.norm.weight": "norm",
    # Mixtral (transformers 5 fused experts) and the older per-expert layout
    "model.layers.0.mlp.gate.weight": "router",
    "model.layers.0.mlp.experts.gate_up_proj": "expert_ffn",
    "model.layers.0.mlp.experts.down_proj": "expert_ffn",
    "model.layers.0.block_sparse_moe.gate.weight": "router",
    "model.layers.0.block_sparse_moe.experts.3.w1.weight": "expert_ffn",
    # BERT
    "bert.embeddings.word_embeddings.weight": "embed",
    "bert.embeddings.LayerNorm.weight": "norm",
    "bert.encoder.layer.2.attention.self.query.weight": "attn",
    "bert.encoder.layer.2.attention.output.dense.weight": "attn",
    "bert.encoder.layer.2.attention.output.LayerNorm.bias": "norm",
    "bert.encoder.layer.2.intermediate.dense.weight": "ffn",
    "bert.encoder.layer.2.output.dense.weight": "ffn",
    "encoder.layer.2.output.dense.weight": "ffn",
    "bert.pooler.dense.weight": "other",
    "cls.predictions.transform.dense.weight": "other",
}


@pytest.mark.parametrize(("name", "family"), sorted(CASES.items()))
def test_classify(name: str, family: str) -> None:
    assert classify(name) == family
    assert classify(name.removesuffix(".weight").removesuffix(".bias")) == family


def test_layer_index() -> None:
    assert layer_index("model.layers.31.mlp.up_proj.weight") == 31
    assert layer_index("transformer.h.0.attn.c_attn.weight") == 0
    assert layer_index("bert.encoder.layer.5.output.dense.weight") == 5
    assert layer_index("model.embed_tokens.weight") is None
    assert layer_index("model.layers_norm.weight") is None


@pytest.mark.parametrize("arch", ["gpt2", "llama", "qwen3", "mixtral", "bert"])
def test_every_real_parameter_gets_a_family(
    arch: str, tiny_model_dir: Callable[[str], Path]
) -> None:
    from safetensors import safe_open

    with safe_open(str(tiny_model_dir(arch) / "model.safetensors"), framework="pt") as handle:
        shapes = {name: handle.get_slice(name).get_shape() for name in handle.keys()}  # noqa: SIM118
    matrices = {name: classify(name) for name, shape in shapes.items() if len(shape) >= 2}
    assert {classify(name) for name in shapes} <= set(FAMILIES)
    assert "attn" in matrices.values()
    assert ("expert_ffn" if arch == "mixtral" else "ffn") in matrices.values()
    assert "embed" in matrices.values()
    if arch == "mixtral":
        assert "router" in matrices.values()
