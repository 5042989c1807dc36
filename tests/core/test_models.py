"""Loading real checkpoints, and every way a user can hand us a bad one."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from invarlock_core.errors import ModelLoadError, TokenizerMismatchError, UsageError
from invarlock_core.models import (
    check_tokenizers_match,
    checkpoint_files_digest,
    load_model,
    resolve_device,
    tokenizer_fingerprint,
)
from invarlock_core.testing import build_tokenizer


def test_load_gpt2_cpu(tiny_model_dir: Callable[[str], Path]) -> None:
    loaded = load_model(tiny_model_dir("gpt2"), device="cpu")
    assert loaded.device == "cpu"
    assert loaded.dtype == "float32"
    assert not loaded.model.training
    assert loaded.tokenizer is not None
    assert loaded.digest.startswith("sha256:")
    assert "model.safetensors" in loaded.files
    assert loaded.digest == checkpoint_files_digest(loaded.path)[0]


def test_encoder_without_lm_head(minilm_dir: Path) -> None:
    loaded = load_model(minilm_dir, device="cpu", causal_lm=False)
    assert loaded.config.model_type == "bert"
    assert sum(p.numel() for p in loaded.model.parameters()) > 20_000_000


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "nope")


def test_no_config(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        load_model(tmp_path)


def test_corrupt_safetensors(tmp_path: Path, tiny_model_dir: Callable[[str], Path]) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir("gpt2"), broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelLoadError, match=r"model\.safetensors is not a readable safetensors"):
        load_model(broken)


def test_pickled_weights_are_refused(tmp_path: Path, tiny_model_dir: Callable[[str], Path]) -> None:
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir("gpt2"), pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="never loaded"):
        load_model(pickled)


def test_remote_code_needs_opt_in(tmp_path: Path, tiny_model_dir: Callable[[str], Path]) -> None:
    import json

    remote = tmp_path / "remote"
    shutil.copytree(tiny_model_dir("gpt2"), remote)
    config = json.loads((remote / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (remote / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="trust-remote-code"):
        load_model(remote)


def test_tokenizer_match_and_mismatch(tmp_path: Path, tiny_model_dir: Callable[[str], Path]) -> None:
    base = load_model(tiny_model_dir("gpt2"), device="cpu")
    same = load_model(tiny_model_dir("llama"), device="cpu")  # same offline tokenizer recipe
    assert check_tokenizers_match(base.tokenizer, same.tokenizer) == tokenizer_fingerprint(
        base.tokenizer
    )
    other = build_tokenizer(tmp_path / "wp", wordpiece=True)
    with pytest.raises(TokenizerMismatchError, match="differs from the baseline"):
        check_tokenizers_match(base.tokenizer, other)
    with pytest.raises(TokenizerMismatchError, match="no tokenizer"):
        check_tokenizers_match(base.tokenizer, None)


def test_device_resolution() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in {"cpu", "cuda"}
    with pytest.raises(UsageError, match="expected auto, cpu or cuda"):
        resolve_device("tpu")


def test_digest_changes_with_any_byte(tmp_path: Path, tiny_model_dir: Callable[[str], Path]) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir("gpt2"), copy)
    before, files = checkpoint_files_digest(copy)
    assert before == checkpoint_files_digest(tiny_model_dir("gpt2"))[0]
    config = copy / "config.json"
    config.write_text(config.read_text() + " ")
    after, files_after = checkpoint_files_digest(copy)
    assert after != before
    assert {k for k in files if files[k] != files_after[k]} == {"config.json"}
