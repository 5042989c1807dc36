"""What edits need to know about a checkpoint's architecture beyond module families.

* tied weights (input embedding shared with the output head) so that a tied pair is edited once;
* which axis of a stored matrix is its input axis (GPT-2 stores ``Conv1D`` weights transposed);
* which tensors are token embeddings, output heads and MLP output projections;
* how the config declares the number of blocks and the vocabulary size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from invarlock_core.families import classify, layer_index
from invarlock_edits.checkpoint import Checkpoint, TensorInfo

__all__ = [
    "ffn_output_projections",
    "input_axis",
    "output_head_name",
    "tied_pairs",
    "ties_embeddings",
    "token_embedding",
]

_TOKEN_EMBEDDINGS = ("word_embeddings", "embed_tokens", "wte", "tok_embeddings", "embed_in")
_OUTPUT_HEADS = (
    "lm_head.weight",
    "cls.predictions.decoder.weight",
    "embed_out.weight",
    "output.weight",
)
_CONV1D_MODEL_TYPES = {"gpt2"}
_CONV1D_MODULES = {"c_attn", "c_proj", "c_fc", "q_attn"}
_FFN_OUTPUTS = {"down_proj", "c_proj", "fc2", "w2", "dense_4h_to_h"}


def ties_embeddings(config: Mapping[str, Any]) -> bool:
    """Whether the config ties the output head to the input embedding (transformers' default: yes)."""
    text_config = config.get("text_config")
    if isinstance(text_config, Mapping) and "tie_word_embeddings" in text_config:
        return bool(text_config["tie_word_embeddings"])
    return bool(config.get("tie_word_embeddings", True))


def token_embedding(checkpoint: Checkpoint) -> TensorInfo | None:
    """The input token embedding matrix."""
    for info in checkpoint:
        parts = info.name.split(".")
        if info.ndim == 2 and parts[-1] == "weight" and any(p in _TOKEN_EMBEDDINGS for p in parts):
            return info
    return None


def output_head_name(checkpoint: Checkpoint) -> str:
    """The name the output head has (or would have, when tied and not stored)."""
    for name in _OUTPUT_HEADS:
        if name in checkpoint:
            return name
    architectures = checkpoint.config.get("architectures") or []
    if any("MaskedLM" in str(arch) for arch in architectures) or checkpoint.model_type == "bert":
        return "cls.predictions.decoder.weight"
    return "lm_head.weight"


def tied_pairs(checkpoint: Checkpoint) -> dict[str, str]:
    """``{alias: source}`` for tied tensors that are *both* stored (edited once, written twice).

    Detected from the config's ``tie_word_embeddings`` and from identical storage: a stored head
    whose name the config says is tied to the embedding. When only the embedding is stored (the
    usual case: transformers drops tied duplicates on save) there is nothing to alias.
    """
    embedding = token_embedding(checkpoint)
    if embedding is None or not ties_embeddings(checkpoint.config):
        return {}
    head = output_head_name(checkpoint)
    info = checkpoint.tensors.get(head)
    if info is None or info.shape != embedding.shape or info.dtype != embedding.dtype:
        return {}
    return {head: embedding.name}


def input_axis(info: TensorInfo, model_type: str) -> int:
    """The axis of the stored tensor that multiplies the layer's input (-1 except GPT-2 Conv1D)."""
    parts = info.name.split(".")
    if (
        model_type in _CONV1D_MODEL_TYPES
        and info.ndim == 2
        and any(p in _CONV1D_MODULES for p in parts)
    ):
        return 0
    return -1


def ffn_output_projections(checkpoint: Checkpoint) -> list[TensorInfo]:
    """MLP output projections (``down_proj``, GPT-2 ``mlp.c_proj``, BERT ``output.dense``, experts' ``w2``)."""
    found = []
    for info in checkpoint:
        if (
            info.ndim < 2
            or info.name.endswith(".bias")
            or classify(info.name) not in {"ffn", "expert_ffn"}
        ):
            continue
        parts = [p for p in info.name.split(".") if p != "weight"]
        last = parts[-1] if parts else ""
        bert_output = last == "dense" and len(parts) >= 2 and parts[-2] == "output"
        if last in _FFN_OUTPUTS or bert_output:
            found.append(info)
    return sorted(found, key=lambda i: (layer_index(i.name) or 0, i.name))
