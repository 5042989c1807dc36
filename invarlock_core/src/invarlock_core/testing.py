"""Tiny real Hugging Face models built offline, for tests, the demo and benchmarks.

:func:`build_tiny_model` writes a genuine checkpoint directory (``model.safetensors``,
``config.json``, a tokenizer trained offline on the shipped English sample) for one of
:data:`ARCHITECTURES`, after a few seconds of training on the same text so that weights are not
random and edits do measurable harm. :func:`tiny_model` caches builds on disk, keyed by
everything that determines the bytes (architecture config, seed, steps, text, library versions).
"""

from __future__ import annotations

import os
import shutil
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

from invarlock_core.atomic import staged_directory
from invarlock_core.canonical import canonical_digest, sha256_hex
from invarlock_core.errors import UsageError
from invarlock_core.models import quiet_transformers
from invarlock_core.optional_deps import require

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "build_tiny_model",
    "build_tokenizer",
    "sample_text",
    "tiny_model",
]

Architecture = Literal["gpt2", "llama", "mistral", "qwen2", "qwen3", "mixtral", "bert"]
ARCHITECTURES: tuple[Architecture, ...] = get_args(Architecture)

VOCAB_SIZE = 512
_BUILDER_VERSION = 1
_EOS = "<|endoftext|>"
_BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def sample_text() -> str:
    """The shipped offline English sample (original text written for this project, CC0)."""
    return resources.files("invarlock_core").joinpath("data", "sample_en.txt").read_text("utf-8")


def build_tokenizer(out_dir: str | Path, *, wordpiece: bool = False) -> Any:
    """Train a small tokenizer on the sample text and save it to ``out_dir``.

    Byte-level BPE with ``<|endoftext|>`` for decoder models; WordPiece with BERT's special tokens
    for encoders. Returns the ``PreTrainedTokenizerFast``.
    """
    tokenizers = require("tokenizers", purpose="building test tokenizers")
    transformers = require("transformers", purpose="building test tokenizers")
    text = sample_text().split("\n\n")
    if wordpiece:
        tok = tokenizers.Tokenizer(tokenizers.models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
        trainer = tokenizers.trainers.WordPieceTrainer(
            vocab_size=VOCAB_SIZE, special_tokens=list(_BERT_SPECIALS), show_progress=False
        )
        tok.train_from_iterator(text, trainer=trainer)
        tok.decoder = tokenizers.decoders.WordPiece()
        fast = transformers.PreTrainedTokenizerFast(
            tokenizer_object=tok,
            unk_token="[UNK]",
            pad_token="[PAD]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            mask_token="[MASK]",
        )
    else:
        tok = tokenizers.Tokenizer(tokenizers.models.BPE())
        tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = tokenizers.decoders.ByteLevel()
        trainer = tokenizers.trainers.BpeTrainer(
            vocab_size=VOCAB_SIZE,
            special_tokens=[_EOS],
            initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(text, trainer=trainer)
        fast = transformers.PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token=_EOS, eos_token=_EOS, unk_token=_EOS, pad_token=_EOS
        )
    fast.save_pretrained(str(out_dir))
    return fast


def _config_kwargs(arch: Architecture) -> dict[str, Any]:
    common = {"vocab_size": VOCAB_SIZE, "max_position_embeddings": 256}
    decoder = {
        **common,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "pad_token_id": 0,
    }
    table: dict[str, dict[str, Any]] = {
        "gpt2": {
            "vocab_size": VOCAB_SIZE,
            "n_positions": 256,
            "n_embd": 64,
            "n_layer": 2,
            "n_head": 4,
            "bos_token_id": 0,
            "eos_token_id": 0,
        },
        "llama": {**decoder, "tie_word_embeddings": False},
        "mistral": {**decoder, "tie_word_embeddings": False, "sliding_window": None},
        "qwen2": {**decoder, "tie_word_embeddings": True},
        "qwen3": {**decoder, "head_dim": 16, "tie_word_embeddings": True},
        "mixtral": {**decoder, "num_local_experts": 4, "num_experts_per_tok": 2},
        "bert": {
            **common,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "pad_token_id": 0,
        },
    }
    return table[arch]


_CLASSES = {
    "gpt2": ("GPT2Config", "GPT2LMHeadModel"),
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
    "mistral": ("MistralConfig", "MistralForCausalLM"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM"),
    "mixtral": ("MixtralConfig", "MixtralForCausalLM"),
    "bert": ("BertConfig", "BertForMaskedLM"),
}


def _check_arch(arch: str) -> Architecture:
    if arch not in ARCHITECTURES:
        raise UsageError(f"unknown tiny architecture {arch!r}; valid: {', '.join(ARCHITECTURES)}")
    return arch


def build_tiny_model(
    arch: str, out_dir: str | Path, *, seed: int = 0, train_steps: int = 300, seq_len: int = 64
) -> Path:
    """Build, briefly train and save a tiny ``arch`` checkpoint into the empty/new ``out_dir``."""
    architecture = _check_arch(arch)
    torch = require("torch", purpose="building test models")
    transformers = require("transformers", purpose="building test models")
    quiet_transformers()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    is_bert = architecture == "bert"
    tokenizer = build_tokenizer(out, wordpiece=is_bert)
    config_cls, model_cls = (getattr(transformers, name) for name in _CLASSES[architecture])
    torch.manual_seed(seed)
    model = model_cls(config_cls(**_config_kwargs(architecture)))
    ids = torch.tensor(tokenizer(sample_text())["input_ids"], dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    mask_id = tokenizer.mask_token_id if is_bert else None
    for _ in range(train_steps):
        starts = torch.randint(0, len(ids) - seq_len - 1, (8,), generator=generator)
        batch = torch.stack([ids[s : s + seq_len] for s in starts.tolist()])
        if is_bert:
            masked = torch.rand(batch.shape, generator=generator) < 0.15
            labels = torch.where(masked, batch, torch.full_like(batch, -100))
            inputs = torch.where(masked, torch.full_like(batch, mask_id), batch)
            loss = model(input_ids=inputs, labels=labels).loss
        else:
            loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(str(out), safe_serialization=True)
    return out


def _cache_root() -> Path:
    root = os.environ.get("INVARLOCK_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "invarlock"


def tiny_model(
    arch: str, *, seed: int = 0, train_steps: int = 300, cache_dir: str | Path | None = None
) -> Path:
    """A cached :func:`build_tiny_model` checkpoint (built once per cache key, atomically)."""
    architecture = _check_arch(arch)
    torch = require("torch", purpose="building test models")
    transformers = require("transformers", purpose="building test models")
    key = canonical_digest(
        {
            "arch": architecture,
            "config": _config_kwargs(architecture),
            "seed": seed,
            "steps": train_steps,
            "text": sha256_hex(sample_text().encode("utf-8")),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "builder": _BUILDER_VERSION,
        }
    )
    root = Path(cache_dir) if cache_dir is not None else _cache_root() / "tiny-models"
    target = root / f"{architecture}-s{seed}-{key[:16]}"
    if (target / "config.json").is_file():
        return target
    try:
        with staged_directory(target) as stage:
            build_tiny_model(architecture, stage, seed=seed, train_steps=train_steps)
    except FileExistsError:
        pass  # another process finished the same build first; its bytes are identical
    if not (target / "config.json").is_file():  # pragma: no cover - defensive
        shutil.rmtree(target, ignore_errors=True)
        raise RuntimeError(f"tiny model cache at {target} is incomplete")
    return target

