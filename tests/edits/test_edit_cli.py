"""``invarlock edit apply`` and ``invarlock edit list``: real subprocesses for the main paths,
``invarlock_core.cli.main(argv)`` in-process (same parser, handlers and exit codes) for the many
error cases, to keep the suite fast."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from edit_helpers import read_metadata

from invarlock_edits import check_edit_output

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """Run ``invarlock ARGS`` in-process; returns a CompletedProcess-like result."""
    from invarlock_core.cli import main

    def call(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        code = main(list(args))
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, captured.out, captured.err)

    return call


def _one_line_error(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


def test_edit_list_shows_every_edit_with_parameters(invarlock: Cli) -> None:
    result = invarlock("edit", "list")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for name in (
        "quant_rtn",
        "fp8_quant",
        "magnitude_prune",
        "lowrank_svd",
        "nan_injection",
        "ve_mlp_scale_skew",
    ):
        assert name in text
    assert "quant_rtn[:bits[:group_size[:symmetric]]][:scope]" in text
    assert "Error injections:" in text
    assert "detection: must_detect by invariants" in text
    listed = json.loads(invarlock("edit", "list", "--json").stdout)
    by_name = {entry["name"]: entry for entry in listed}
    assert [p["name"] for p in by_name["quant_rtn"]["parameters"]] == [
        "bits",
        "group_size",
        "symmetric",
        "scope",
    ]
    assert by_name["quant_rtn"]["plugin"] == "invarlock_edits.builtin"
    assert by_name["nan_injection"]["detection"] == {
        "requirement": "must_detect",
        "guards": ["invariants"],
        "probe": None,
    }
    assert by_name["quant_rtn"]["clean_sentinel"] is True


def test_edit_apply_writes_a_checkpoint_and_metadata(
    invarlock: Cli, cli: Cli, tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    baseline = tiny_model_dir("qwen2")
    out = tmp_path / "rtn"
    result = invarlock(
        "edit",
        "apply",
        "--baseline",
        str(baseline),
        "--edit",
        "quant_rtn:4:32:all",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        f"wrote {out}: quant_rtn:bits=4:group_size=32:symmetric=true:all"
    )
    assert {"model.safetensors", "config.json", "tokenizer.json", "edit_metadata.json"} <= {
        p.name for p in out.iterdir()
    }
    metadata = read_metadata(out)
    assert metadata["schema"] == "invarlock/evidence-pack-edit-metadata-v1"
    assert metadata["edit_spec"] == "quant_rtn:4:32:all"
    assert check_edit_output(out) == []
    assert [p.name for p in tmp_path.iterdir()] == ["rtn"]  # no staging directory left behind

    again = cli(
        "edit", "apply", "--baseline", str(baseline), "--edit", "nan_injection", "--out", str(out)
    )
    assert "already exists (pass --overwrite" in _one_line_error(again)
    assert read_metadata(out)["edit_type"] == "quant_rtn"  # untouched
    replaced = invarlock(
        "edit",
        "apply",
        "--baseline",
        str(baseline),
        "--edit",
        "nan_injection",
        "--out",
        str(out),
        "--overwrite",
        "--json",
    )
    assert replaced.returncode == 0, replaced.stderr
    printed = json.loads(replaced.stdout)
    assert printed == read_metadata(out)
    assert printed["artifact_class"] == "fault_injection_fixture"
    assert printed["scenario_id"] == "nan_injection"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rtn"]


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("bogus_edit:1", "unknown edit 'bogus_edit'; valid: extreme_quant, fp8_quant"),
        (
            "quant_rtn:99:all",
            "quant_rtn: invalid bits '99': expected an integer >= 2 and <= 8; usage: quant_rtn[:bits",
        ),
        ("fp8_quant:e9m9", "expected one of e4m3fn, e5m2"),
        ("magnitude_prune:0.5:ffn@layer=31", "the model has 2 layers (valid 0-1)"),
        ("quant_rtn::all", "empty argument"),
    ],
)
def test_bad_specs_exit_2_with_one_line_listing_valid_options(
    spec: str, fragment: str, cli: Cli, tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = cli(
        "edit",
        "apply",
        "--baseline",
        str(tiny_model_dir("llama")),
        "--edit",
        spec,
        "--out",
        str(out),
    )
    assert fragment in _one_line_error(result)
    assert list(tmp_path.iterdir()) == []


def test_bad_baselines_and_outputs_exit_2(
    cli: Cli, tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    missing = cli(
        "edit",
        "apply",
        "--baseline",
        str(tmp_path / "nope"),
        "--edit",
        "quant_rtn",
        "--out",
        str(tmp_path / "o"),
    )
    assert "does not exist" in _one_line_error(missing)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text("{}")
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04")
    no_safetensors = cli(
        "edit",
        "apply",
        "--baseline",
        str(pickled),
        "--edit",
        "quant_rtn",
        "--out",
        str(tmp_path / "o"),
    )
    assert "no *.safetensors weights" in _one_line_error(no_safetensors)
    baseline = tiny_model_dir("gpt2")
    inside = cli(
        "edit",
        "apply",
        "--baseline",
        str(baseline),
        "--edit",
        "quant_rtn",
        "--out",
        str(baseline / "sub"),
    )
    assert "must not be the baseline directory or inside it" in _one_line_error(inside)
    assert not (baseline / "sub").exists()


def test_clean_sentinel_on_the_command_line(
    cli: Cli, tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    baseline = tiny_model_dir("llama")
    missing = cli(
        "edit",
        "apply",
        "--baseline",
        str(baseline),
        "--edit",
        "quant_rtn:clean:ffn",
        "--out",
        str(tmp_path / "a"),
        env={"PACK_TUNED_EDIT_PARAMS_FILE": ""},
    )
    assert "needs tuned parameters" in _one_line_error(missing)
    absent = cli(
        "edit",
        "apply",
        "--baseline",
        str(baseline),
        "--edit",
        "quant_rtn:clean",
        "--out",
        str(tmp_path / "a"),
        env={"PACK_TUNED_EDIT_PARAMS_FILE": str(tmp_path / "missing.json")},
    )
    assert "missing.json (PACK_TUNED_EDIT_PARAMS_FILE) does not exist" in _one_line_error(absent)
    tuned = tmp_path / "tuned.json"
    tuned.write_text(json.dumps({"edits": {"magnitude_prune": {"prune_level": 0.12}}}))
    from_env = cli(
        "edit",
        "apply",
        "--baseline",
        str(baseline),
        "--edit",
        "magnitude_prune:clean:ffn",
        "--out",
        str(tmp_path / "env"),
        env={"PACK_TUNED_EDIT_PARAMS_FILE": str(tuned)},
    )
    assert from_env.returncode == 0, from_env.stderr
    metadata = read_metadata(tmp_path / "env")
    assert metadata["parameters"]["prune_level"] == 0.12
    assert metadata["tuned_params"]["path"] == str(tuned)
    assert metadata["resolved_spec"] == "magnitude_prune:prune_level=0.12:ffn"
    explicit = cli(
        "edit",
        "apply",
        "--baseline",
        str(baseline),
        "--edit",
        "magnitude_prune:clean",
        "--out",
        str(tmp_path / "opt"),
        "--tuned-params",
        str(tuned),
        "--device",
        "auto",
        "--scenario-id",
        "prune_clean",
        "--category",
        "clean",
    )
    assert explicit.returncode == 0, explicit.stderr
    labelled = read_metadata(tmp_path / "opt")
    assert labelled["coverage"]["scope"] == "ffn"
    assert (labelled["scenario_id"], labelled["category"]) == ("prune_clean", "clean")


def test_edit_metadata_meets_the_evidence_pack_sidecar_contract(
    cli: Cli, tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    """invarlock-packs checks edit_metadata.json with its own schema when it seals a pack."""
    from invarlock_core.schema_validation import schema_errors

    for spec in ("quant_rtn:8:all", "rank_collapse"):
        out = tmp_path / spec.replace(":", "_")
        result = cli(
            "edit",
            "apply",
            "--baseline",
            str(tiny_model_dir("gpt2")),
            "--edit",
            spec,
            "--out",
            str(out),
        )
        assert result.returncode == 0, result.stderr
        assert schema_errors(read_metadata(out), "edit-metadata", "invarlock_core") == []
