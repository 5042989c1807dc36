"""Which subject parameters are bit-identical to the baseline's: real checkpoints, real bytes."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from invarlock_core.evaluation.unchanged_tensors import (
    identical_stored_tensors,
    unchanged_parameters,
)
from invarlock_core.models import checkpoint_files_digest, load_model


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _rewrite(directory: Path, change: Callable[[dict[str, torch.Tensor]], None]) -> None:
    file = directory / "model.safetensors"
    tensors = load_file(file)
    change(tensors)
    save_file(tensors, file, metadata={"format": "pt"})


def _unchanged(baseline: Path, subject: Path) -> tuple[frozenset[str], set[str]]:
    model = load_model(subject, device="cpu").model
    names = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    return unchanged_parameters(model, baseline, subject), names


def test_a_copy_of_the_baseline_is_unchanged_everywhere(
    tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    baseline = tiny_model_dir("llama")
    copy = _copy(baseline, tmp_path / "copy")
    unchanged, names = _unchanged(baseline, copy)
    assert unchanged == names
    model = load_model(copy, device="cpu").model
    digests = (checkpoint_files_digest(baseline)[1], checkpoint_files_digest(copy)[1])
    assert unchanged_parameters(model, baseline, copy, file_digests=digests) == names


def test_only_the_edited_tensors_count_as_changed(
    tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    baseline = tiny_model_dir("llama")
    subject = _copy(baseline, tmp_path / "subject")
    edited = {"model.layers.0.mlp.down_proj.weight", "model.layers.1.self_attn.q_proj.weight"}

    def change(tensors: dict[str, torch.Tensor]) -> None:
        for name in edited:
            flat = tensors[name].view(-1)
            flat[7] = torch.nextafter(flat[7], torch.tensor(float("inf")))  # one ulp, one element

    _rewrite(subject, change)
    unchanged, names = _unchanged(baseline, subject)
    assert unchanged == names - edited


def test_negative_zero_for_positive_zero_is_a_change(
    tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    baseline = tiny_model_dir("llama")
    subject = _copy(baseline, tmp_path / "subject")
    name = "model.layers.0.mlp.up_proj.weight"

    def change(tensors: dict[str, torch.Tensor]) -> None:
        tensors[name].view(-1)[0] = 0.0

    _rewrite(baseline := _copy(baseline, tmp_path / "baseline"), change)

    def negate(tensors: dict[str, torch.Tensor]) -> None:
        tensors[name].view(-1)[0] = -0.0

    _rewrite(subject, negate)
    unchanged, names = _unchanged(baseline, subject)
    assert unchanged == names - {name}


@pytest.mark.parametrize("arch", ["gpt2", "qwen2"])
def test_a_tied_weight_is_unchanged_only_when_all_its_stored_names_are(
    arch: str, tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    baseline = tiny_model_dir(arch)
    model = load_model(baseline, device="cpu").model
    groups: dict[int, list[str]] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        groups.setdefault(parameter.data_ptr(), []).append(name)
    tied = next(names for names in groups.values() if len(names) > 1)
    subject = _copy(baseline, tmp_path / "subject")
    stored = next(name for name in tied if name in load_file(subject / "model.safetensors"))

    def change(tensors: dict[str, torch.Tensor]) -> None:
        tensors[stored].view(-1)[0] += 1.0

    _rewrite(subject, change)
    unchanged, names = _unchanged(baseline, subject)
    assert unchanged == names - set(tied)


def test_a_different_config_means_nothing_is_assumed(
    tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    baseline = tiny_model_dir("llama")
    subject = _copy(baseline, tmp_path / "subject")
    config = json.loads((subject / "config.json").read_text())
    config["rms_norm_eps"] = config.get("rms_norm_eps", 1e-6) * 2
    (subject / "config.json").write_text(json.dumps(config))
    assert _unchanged(baseline, subject)[0] == frozenset()
    model = load_model(subject, device="cpu").model
    digests = (checkpoint_files_digest(baseline)[1], checkpoint_files_digest(subject)[1])
    assert unchanged_parameters(model, baseline, subject, file_digests=digests) == frozenset()


def test_a_tensor_stored_in_only_one_checkpoint_is_not_unchanged(
    tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    baseline = tiny_model_dir("llama")
    subject = _copy(baseline, tmp_path / "subject")
    name = "model.layers.1.mlp.gate_proj.weight"

    def rename(tensors: dict[str, torch.Tensor]) -> None:
        tensors["renamed." + name] = tensors.pop(name)

    _rewrite(subject, rename)
    identical, stored = identical_stored_tensors(baseline, subject)
    assert name not in identical
    assert {name, "renamed." + name} <= stored
    # Loaded without that tensor, the parameter is freshly initialised: never unchanged, even
    # when neither checkpoint stores it under its name.
    model = load_model(subject, device="cpu").model
    assert name not in unchanged_parameters(model, baseline, subject)
    _rewrite(baseline := _copy(baseline, tmp_path / "baseline"), rename)
    assert name not in unchanged_parameters(model, baseline, subject)
    assert "model.layers.1.mlp.up_proj.weight" in unchanged_parameters(model, baseline, subject)


def test_an_unreadable_checkpoint_gives_the_empty_set(
    tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    baseline = tiny_model_dir("llama")
    subject = _copy(baseline, tmp_path / "subject")
    model = load_model(subject, device="cpu").model
    (subject / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    assert unchanged_parameters(model, baseline, subject) == frozenset()
    (subject / "config.json").unlink()
    assert unchanged_parameters(model, baseline, subject) == frozenset()


def _write_checkpoint(
    directory: Path, tensors: dict[str, torch.Tensor], shards: int
) -> dict[str, str]:
    directory.mkdir()
    names = sorted(tensors)
    if shards == 1:
        save_file(tensors, directory / "model.safetensors")
    else:
        weight_map = {}
        for shard in range(shards):
            file = f"model-{shard + 1:05d}-of-{shards:05d}.safetensors"
            members = {n: tensors[n] for n in names[shard::shards]}
            save_file(members, directory / file)
            weight_map.update(dict.fromkeys(members, file))
        (directory / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {}, "weight_map": weight_map})
        )
    return checkpoint_files_digest(directory)[1]


@settings(max_examples=40)
@given(
    shapes=st.lists(st.tuples(st.integers(1, 6), st.integers(1, 6)), min_size=1, max_size=8),
    data=st.data(),
)
def test_identical_stored_tensors_finds_exactly_the_untouched_tensors(
    shapes: list[tuple[int, int]], data: st.DataObject
) -> None:
    generator = torch.Generator().manual_seed(len(shapes))
    baseline = {f"t{i}": torch.randn(*shape, generator=generator) for i, shape in enumerate(shapes)}
    touched = data.draw(st.sets(st.sampled_from(sorted(baseline))))
    subject = {name: tensor.clone() for name, tensor in baseline.items()}
    for name in touched:
        flat = subject[name].view(-1)
        position = data.draw(st.integers(0, flat.numel() - 1))
        flat[position] = torch.nextafter(flat[position], torch.tensor(float("inf")))
    shards = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    with tempfile.TemporaryDirectory() as tmp:
        left, right = Path(tmp) / "baseline", Path(tmp) / "subject"
        digests = (
            _write_checkpoint(left, baseline, shards[0]),
            _write_checkpoint(right, subject, shards[1]),
        )
        for file_digests in (None, digests):
            identical, stored = identical_stored_tensors(left, right, file_digests=file_digests)
            assert identical == set(baseline) - touched
            assert stored == set(baseline)
        wanted = data.draw(st.sets(st.sampled_from([*sorted(baseline), "absent"])))
        identical, stored = identical_stored_tensors(left, right, names=wanted)
        assert identical == (set(baseline) - touched) & wanted
        assert stored == set(baseline)


def test_a_tie_group_is_changed_when_any_of_its_stored_names_is(
    tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    """Both names of a tie stored, one of them changed. transformers then loads them untied (each
    from its own bytes): only the changed one is changed. A loader that ties them reads one copy,
    and which one is unknown: then both count as changed."""
    source = tiny_model_dir("gpt2")
    embed, head = "transformer.wte.weight", "lm_head.weight"

    def store_head(tensors: dict[str, torch.Tensor]) -> None:
        tensors[head] = tensors[embed].clone()

    baseline = _copy(source, tmp_path / "baseline")
    _rewrite(baseline, store_head)
    subject = _copy(baseline, tmp_path / "subject")

    def change_embed(tensors: dict[str, torch.Tensor]) -> None:
        tensors[embed].view(-1)[3] += 1.0

    _rewrite(subject, change_embed)
    identical, _stored = identical_stored_tensors(baseline, subject)
    assert head in identical
    assert embed not in identical
    model = load_model(subject, device="cpu").model
    names = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    assert model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr()
    assert unchanged_parameters(model, baseline, subject) == names - {embed}
    model.lm_head.weight = model.transformer.wte.weight  # tied after loading
    assert unchanged_parameters(model, baseline, subject) == names - {embed, head}


def test_large_tensors_are_compared_chunk_by_chunk_to_the_last_byte(tmp_path: Path) -> None:
    big = torch.zeros(3 << 20)  # 12 MiB of float32: more than one comparison chunk
    left, right = tmp_path / "baseline", tmp_path / "subject"
    _write_checkpoint(left, {"big": big, "small": torch.ones(3)}, 1)
    changed = big.clone()
    changed[-1] = -0.0  # the sign bit: the very last byte of the tensor
    _write_checkpoint(right, {"big": changed, "small": torch.ones(3)}, 1)
    assert identical_stored_tensors(left, right)[0] == {"small"}
