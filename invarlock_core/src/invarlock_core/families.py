"""One module-family classifier for every architecture InvarLock supports.

Edits use families as scopes (``ffn``, ``attn``, ``all``) and guards use them to pick thresholds.
The classifier works on parameter names (``model.layers.3.mlp.down_proj.weight``) and module names
(``model.layers.3.mlp.down_proj``) of GPT-2, LLaMA/Mistral, Qwen2/Qwen3, Mixtral (including
transformers 5 fused expert tensors) and BERT-style encoders.
"""

from __future__ import annotations

import functools
import itertools
import re
from typing import Literal, get_args

__all__ = ["FAMILIES", "Family", "classify", "layer_index"]

Family = Literal["ffn", "attn", "embed", "norm", "router", "expert_ffn", "other"]
FAMILIES: tuple[Family, ...] = get_args(Family)

_LAYER = re.compile(r"(?:^|\.)(?:h|layers|layer|blocks|block)\.(\d+)(?:\.|$)")
_EMBED = {
    "wte",
    "wpe",
    "embed_tokens",
    "embed_positions",
    "word_embeddings",
    "position_embeddings",
    "token_type_embeddings",
    "lm_head",
    "decoder",
}
_ATTN = {
    "attn",
    "self_attn",
    "attention",
    "c_attn",
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "qkv_proj",
    "query",
    "key",
    "value",
}
_FFN = {
    "mlp",
    "feed_forward",
    "intermediate",
    "c_fc",
    "gate_proj",
    "up_proj",
    "down_proj",
    "fc1",
    "fc2",
    "w1",
    "w2",
    "w3",
}
_ROUTER_PARENTS = {"mlp", "block_sparse_moe", "moe", "feed_forward"}


def _is_norm(part: str) -> bool:
    lowered = part.lower()
    return "norm" in lowered or lowered == "ln" or lowered.startswith("ln_")


@functools.lru_cache(maxsize=1 << 16)
def classify(name: str) -> Family:
    """The family of a parameter or module name (cached: guards ask for every module on both
    sides of an evaluation)."""
    parts = [p for p in name.split(".") if p not in {"weight", "bias"}]
    if any(_is_norm(p) for p in parts):
        return "norm"
    if "experts" in parts:
        return "expert_ffn"
    for parent, part in itertools.pairwise(parts):
        if part == "gate" and parent in _ROUTER_PARENTS:
            return "router"
    if "router" in parts:
        return "router"
    if any(p in _EMBED for p in parts):
        return "embed"
    if any(p in _ATTN for p in parts):
        return "attn"
    if any(p in _FFN for p in parts):
        return "ffn"
    # BERT: encoder.layer.N.output.dense is the FFN output projection.
    if "output" in parts and layer_index(name) is not None:
        return "ffn"
    return "other"


@functools.lru_cache(maxsize=1 << 16)
def layer_index(name: str) -> int | None:
    """The transformer block index in ``name``, or ``None`` outside the blocks."""
    match = _LAYER.search(name)
    return int(match.group(1)) if match else None
