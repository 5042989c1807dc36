"""The third-party plugin distribution in examples/plugin_example, and raw-protocol edits."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from edit_helpers import read_metadata, read_tensors

from invarlock_core.editing import ArtifactClass, Edit, EditParameter, EditSpec
from invarlock_core.errors import PluginError
from invarlock_core.families import classify
from invarlock_core.plugins import get_plugin_manager, get_registries
from invarlock_edits import apply_edit, check_edit_output

Cli = Callable[..., subprocess.CompletedProcess[str]]


def test_the_example_is_a_separate_distribution_found_through_the_entry_point_group() -> None:
    dist = importlib.metadata.distribution("invarlock-plugin-example")
    entry_points = [ep for ep in dist.entry_points if ep.group == "invarlock"]
    assert [(ep.name, ep.value) for ep in entry_points] == [
        ("invarlock_plugin_example.edits", "invarlock_plugin_example.plugin")
    ]
    registration = get_registries().edits.registration("gaussian_noise")
    assert registration.plugin == "invarlock_plugin_example.edits"
    assert isinstance(registration.item, Edit)
    pm = get_plugin_manager()
    assert pm.distributions["invarlock_plugin_example.edits"] == (
        "invarlock-plugin-example",
        "0.1.0",
    )


def test_disabling_the_plugin_removes_its_edit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVARLOCK_DISABLE_PLUGINS", "invarlock_plugin_example.edits")
    with pytest.raises(PluginError, match="unknown edit 'gaussian_noise'; valid: extreme_quant"):
        get_registries().edits.get("gaussian_noise")


def test_invarlock_edit_apply_runs_the_plugin_edit(
    invarlock: Cli, tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    baseline = tiny_model_dir("llama")
    out = tmp_path / "noisy"
    result = invarlock(
        "edit",
        "apply",
        "--baseline",
        str(baseline),
        "--edit",
        "gaussian_noise:0.05:ffn",
        "--out",
        str(out),
        "--seed",
        "3",
    )
    assert result.returncode == 0, result.stderr
    metadata = read_metadata(out)
    assert metadata["edit_type"] == "gaussian_noise"
    assert metadata["producer"] == {"name": "invarlock-plugin-example", "version": "0.1.0"}
    assert metadata["parameters"] == {"relative_std": 0.05, "scope": "ffn"}
    assert check_edit_output(out) == []
    before, after = read_tensors(baseline), read_tensors(out)
    for name in metadata["coverage"]["changed"]:
        assert classify(name) == "ffn"
        delta = after[name] - before[name]
        rms = before[name].pow(2).mean().sqrt()
        assert 0.03 < float(delta.std() / rms) < 0.07
    unchanged = set(before) - set(metadata["coverage"]["changed"])
    assert all(torch.equal(before[n], after[n]) for n in unchanged)


class _ZeroFirstRow:
    """A third-party edit written against the bare protocol (no invarlock_edits helpers)."""

    name = "zero_first_row"
    summary = "zero row 0 of every MLP down projection"
    artifact_class: ArtifactClass = "validation_subject_checkpoint"
    parameters = (EditParameter("scope", "str", "ffn"),)

    def apply(self, spec: EditSpec, *, baseline: Path, out: Path, seed: int) -> Mapping[str, Any]:
        import shutil

        from safetensors.torch import load_file, save_file

        state = load_file(str(baseline / "model.safetensors"))
        for name, tensor in state.items():
            if name.endswith("mlp.down_proj.weight"):
                tensor[0].zero_()
        save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
        for file in baseline.iterdir():
            if file.suffix == ".json":
                shutil.copy(file, out / file.name)
        return {"parameters": {"rows": 1}, "note": "hand-written"}


def test_raw_protocol_edits_get_measured_metadata(
    tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    baseline = tiny_model_dir("llama")
    out = tmp_path / "raw"
    metadata = apply_edit(
        _ZeroFirstRow(), EditSpec.parse("zero_first_row"), baseline=baseline, out=out, seed=0
    )
    assert metadata["coverage"]["changed"] == [
        "model.layers.0.mlp.down_proj.weight",
        "model.layers.1.mlp.down_proj.weight",
    ]
    assert metadata["coverage"]["elements_changed"] > 0
    assert metadata["details"] == {"note": "hand-written"}
    assert metadata["parameters"] == {"rows": 1}
    assert json.loads((out / "edit_metadata.json").read_text()) == metadata
    assert check_edit_output(out) == []


@pytest.mark.slow
def test_invarlock_evaluate_with_the_plugin_edit(
    invarlock: Cli, tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    baseline = tiny_model_dir("gpt2")
    out = tmp_path / "report"
    result = invarlock(
        "evaluate", "--baseline", str(baseline), "--edit", "gaussian_noise:0.02:ffn", "--out", str(out),
        "--preview-windows", "8", "--final-windows", "8", "--seq-len", "64", "--device", "cpu",
        "--bootstrap-replicates", "100", "--guards", "none", "--keep-subject",
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    report = json.loads((out / "evaluation.report.json").read_text())
    assert report["subject"]["edit_spec"] == "gaussian_noise:0.02:ffn"
    assert report["subject"]["edit"]["edit_type"] == "gaussian_noise"
    assert report["subject"]["edit"]["producer"]["name"] == "invarlock-plugin-example"
    assert check_edit_output(out / "subject") == []
