"""Error injections: what each one changes, that it changes nothing else, and determinism."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from edit_helpers import changed_tensors, read_metadata, read_tensors
from hypothesis import given, settings
from hypothesis import strategies as st

from invarlock_core.editing import EditSpec
from invarlock_core.families import classify, layer_index
from invarlock_edits import apply_edit, check_edit_output
from invarlock_edits.injections import INJECTIONS

Apply = Callable[..., tuple[Path, dict[str, Any]]]
ARCHS = ["gpt2", "llama", "qwen2", "mixtral", "bert"]
BY_NAME = {edit.name: edit for edit in INJECTIONS}
MUST_DETECT = {
    "nan_injection": ["invariants"],
    "inf_injection": ["invariants"],
    "shape_mismatch": ["invariants"],
    "missing_tensors": ["invariants"],
    "weight_tying_break": ["invariants"],
    "extreme_quant": ["spectral", "primary_metric"],
    "scale_explosion": ["spectral", "primary_metric"],
    "rank_collapse": ["spectral", "primary_metric"],
    "norm_collapse": ["spectral", "primary_metric"],
}
INFORMATIONAL = {
    "rmt_norm_noise": "rmt",
    "spectral_moderate_scale": "spectral",
    "ve_mlp_scale_skew": "variance",
}


def test_every_seed_injection_is_registered_with_its_detection_class() -> None:
    assert set(BY_NAME) == set(MUST_DETECT) | set(INFORMATIONAL)
    for name, guards in MUST_DETECT.items():
        detection = BY_NAME[name].detection
        assert detection is not None
        assert detection.requirement == "must_detect"
        assert list(detection.guards) == guards
        assert BY_NAME[name].artifact_class == "fault_injection_fixture"
    for name, guard in INFORMATIONAL.items():
        detection = BY_NAME[name].detection
        assert detection is not None
        assert detection.requirement == "informational"
        assert detection.guards == (guard,)
    assert BY_NAME["rmt_norm_noise"].detection.probe == "rmt_probe.json"  # type: ignore[union-attr]
    assert BY_NAME["ve_mlp_scale_skew"].detection.probe == "ve_probe.json"  # type: ignore[union-attr]


@settings(max_examples=30, deadline=None)
@given(
    name=st.sampled_from(sorted(BY_NAME)),
    arch=st.sampled_from([*ARCHS, "mistral", "qwen3"]),
    seed=st.integers(0, 2**20),
)
def test_each_injection_changes_only_the_tensors_it_declares(
    name: str, arch: str, seed: int, tiny_model_dir: Callable[[str], Path]
) -> None:
    baseline = tiny_model_dir(arch)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fixture"
        metadata = apply_edit(
            BY_NAME[name], EditSpec.parse(name), baseline=baseline, out=out, seed=seed
        )
        actual = changed_tensors(read_tensors(baseline), read_tensors(out))
        coverage = metadata["coverage"]
        assert actual
        assert actual <= set(coverage["declared"])
        assert actual == set(coverage["changed"]) | set(coverage["added"]) | set(
            coverage["removed"]
        )
        assert metadata["artifact_class"] == "fault_injection_fixture"
        assert metadata["detection"]["requirement"] in {"must_detect", "informational"}
        assert check_edit_output(out) == []


@pytest.mark.parametrize(
    "name", ["nan_injection:3", "rmt_norm_noise", "shape_mismatch", "rank_collapse"]
)
def test_injections_are_deterministic_with_a_seed(
    name: str, apply: Apply, tiny_model_dir: Callable[[str], Path]
) -> None:
    baseline = tiny_model_dir("llama")
    first = apply(baseline, name, seed=11)[1]["output"]
    second = apply(baseline, name, seed=11)[1]["output"]
    other = apply(baseline, name, seed=12)[1]["output"]
    assert first == second
    if name != "rank_collapse":  # rank-1 collapse is the leading singular pair: seed-independent
        assert first["digest"] != other["digest"]


@pytest.mark.parametrize("arch", ARCHS)
def test_nan_and_inf_land_where_documented(
    arch: str, apply: Apply, tiny_model_dir: Callable[[str], Path]
) -> None:
    baseline = tiny_model_dir(arch)
    out, metadata = apply(baseline, "nan_injection:3")
    (name,) = metadata["coverage"]["changed"]
    tensor = read_tensors(out)[name]
    assert layer_index(name) == 0
    assert torch.isnan(tensor.reshape(-1)[0])
    assert int(torch.isnan(tensor).sum()) == 3
    assert metadata["details"]["positions"][0] == [0] * tensor.ndim
    out, metadata = apply(baseline, "inf_injection")
    (name,) = metadata["coverage"]["changed"]
    assert classify(name) == "attn"
    tensor = read_tensors(out)[name]
    assert tensor.reshape(-1)[0] == float("inf")
    assert int(torch.isinf(tensor).sum()) == 1


@pytest.mark.parametrize("arch", ["gpt2", "mixtral", "bert"])
def test_weight_damage_injections(
    arch: str, apply: Apply, tiny_model_dir: Callable[[str], Path]
) -> None:
    baseline = tiny_model_dir(arch)
    before = read_tensors(baseline)
    out, metadata = apply(baseline, "scale_explosion")
    (name,) = metadata["coverage"]["changed"]
    assert classify(name) in {"ffn", "expert_ffn"}
    assert torch.allclose(read_tensors(out)[name], before[name] * 100)

    out, metadata = apply(baseline, "extreme_quant")
    after = read_tensors(out)
    for name in metadata["coverage"]["changed"]:
        rows = (
            after[name].T
            if arch == "gpt2" and after[name].ndim == 2 and "wte" not in name and "wpe" not in name
            else after[name]
        )
        assert max(torch.unique(row).numel() for row in rows.reshape(-1, rows.shape[-1])) <= 4

    out, metadata = apply(baseline, "rank_collapse")
    after = read_tensors(out)
    assert 0 < len(metadata["coverage"]["changed"]) <= 8
    for name in metadata["coverage"]["changed"]:
        assert classify(name) == "attn"
        assert int(torch.linalg.matrix_rank(after[name])) == 1
        assert torch.isclose(after[name].norm(), before[name].norm(), rtol=1e-4)

    out, metadata = apply(baseline, "norm_collapse")
    after = read_tensors(out)
    assert 0 < len(metadata["coverage"]["changed"]) <= 32
    assert all(
        classify(n) == "attn" and not after[n].any() for n in metadata["coverage"]["changed"]
    )


@pytest.mark.parametrize("arch", ["gpt2", "llama", "qwen2", "bert"])
def test_weight_tying_break_flips_the_tie(
    arch: str, apply: Apply, tiny_model_dir: Callable[[str], Path]
) -> None:
    import transformers

    baseline = tiny_model_dir(arch)
    cls = transformers.AutoModelForMaskedLM if arch == "bert" else transformers.AutoModelForCausalLM
    out, metadata = apply(baseline, "weight_tying_break")
    tied_before = json.loads((baseline / "config.json").read_text()).get(
        "tie_word_embeddings", True
    )
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is (not tied_before)
    assert metadata["coverage"]["config_changes"]["tie_word_embeddings"] == {
        "from": tied_before,
        "to": not tied_before,
    }

    def shares_storage(directory: Path) -> bool:
        model = cls.from_pretrained(str(directory))
        return bool(
            model.get_input_embeddings().weight.data_ptr()
            == model.get_output_embeddings().weight.data_ptr()
        )

    assert shares_storage(baseline) is tied_before
    assert shares_storage(out) is (not tied_before)


@pytest.mark.parametrize("arch", ARCHS)
def test_structural_injections_produce_loadable_but_different_models(
    arch: str, apply: Apply, tiny_model_dir: Callable[[str], Path]
) -> None:
    import transformers

    cls = transformers.AutoModelForMaskedLM if arch == "bert" else transformers.AutoModelForCausalLM
    baseline = tiny_model_dir(arch)
    config = json.loads((baseline / "config.json").read_text())
    out, metadata = apply(baseline, "shape_mismatch")
    assert json.loads((out / "config.json").read_text())["vocab_size"] == config["vocab_size"] + 8
    model, info = cls.from_pretrained(str(out), output_loading_info=True)
    assert not any(info.values())
    assert model.get_input_embeddings().weight.shape[0] == config["vocab_size"] + 8
    assert metadata["coverage"]["reshaped"]

    out, metadata = apply(baseline, "missing_tensors")
    layers = {layer_index(n) for n in read_tensors(out)} - {None}
    count_key = "n_layer" if arch == "gpt2" else "num_hidden_layers"
    assert json.loads((out / "config.json").read_text())[count_key] == config[count_key] - 1
    assert layers == set(range(config[count_key] - 1))
    model, info = cls.from_pretrained(str(out), output_loading_info=True)
    assert not any(info.values())
    assert metadata["coverage"]["removed"]


@pytest.mark.parametrize("arch", ["llama", "gpt2", "mixtral"])
def test_informational_injections(
    arch: str, apply: Apply, tiny_model_dir: Callable[[str], Path]
) -> None:
    baseline = tiny_model_dir(arch)
    before = read_tensors(baseline)
    out, metadata = apply(baseline, "rmt_norm_noise", seed=3)
    after = read_tensors(out)
    assert metadata["coverage"]["changed"]
    for name in metadata["coverage"]["changed"]:
        assert classify(name) == "norm"
        ratio = after[name] / before[name]
        assert float(ratio.min()) >= 0.5 - 1e-6
        assert float(ratio.max()) <= 1.5 + 1e-6

    out, metadata = apply(baseline, "spectral_moderate_scale")
    after = read_tensors(out)
    for name in metadata["coverage"]["changed"]:
        assert classify(name) == "attn"
        assert torch.allclose(after[name], before[name] * 3)

    out, metadata = apply(baseline, "ve_mlp_scale_skew")
    (name,) = metadata["coverage"]["changed"]
    assert classify(name) in {"ffn", "expert_ffn"}
    assert layer_index(name) == max(i for n in before if (i := layer_index(n)) is not None)
    assert any(part in name for part in ("down_proj", "c_proj", "w2"))
    assert torch.allclose(read_tensors(out)[name], before[name] * 0.9)
    assert read_metadata(out)["details"]["factor"] == 0.9


def test_injections_on_fused_mixtral_experts(apply: Apply, fused_mixtral_dir: Path) -> None:
    _, metadata = apply(fused_mixtral_dir, "ve_mlp_scale_skew")
    assert metadata["coverage"]["changed"] == ["model.layers.1.mlp.experts.down_proj"]
    _, metadata = apply(fused_mixtral_dir, "scale_explosion")
    assert metadata["coverage"]["changed"] == ["model.layers.0.mlp.experts.down_proj"]
