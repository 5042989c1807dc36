"""``invarlock evaluate`` and ``invarlock verify`` end to end, in real subprocesses.

Tiny real GPT-2 checkpoints (built offline by ``invarlock_core.testing``), the dev profile, few
windows of 64 tokens: every run takes seconds. Subjects are made by rewriting real safetensors.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

QUICK = ("--seq-len", "64", "--preview-windows", "2", "--final-windows", "8", "--device", "cpu")


def invarlock(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invarlock_core.cli", *map(str, args)],
        capture_output=True,
        text=True,
        # Core only (no guard/edit plugins): these tests pin the core's own behaviour.
        env={**os.environ, "INVARLOCK_LOAD_PLUGINS": "", **(env or {})},
        timeout=600,
        check=False,
    )


def perturbed(src: Path, dst: Path, change: Callable[[str, Any], Any]) -> Path:
    """Copy checkpoint ``src`` to ``dst`` with every tensor passed through ``change(name, t)``."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    weights = dst / "model.safetensors"
    tensors = load_file(str(weights))
    save_file({k: change(k, v) for k, v in tensors.items()}, str(weights), metadata={"format": "pt"})
    return dst


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture(scope="module")
def baseline(tiny_model_dir: Callable[[str], Path]) -> Path:
    return tiny_model_dir("gpt2")


@pytest.fixture(scope="module")
def noop_report(baseline: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("noop")
    subject = root / "subject"
    shutil.copytree(baseline, subject)  # an identical copy: the noop edit
    out = root / "out"
    result = invarlock("evaluate", "--baseline", baseline, "--subject", subject, "--out", out, *QUICK)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("PASS  ratio 1.0000  CI [1.0000, 1.0000]")
    assert f"report: {out / 'evaluation.report.json'}" in result.stdout
    return out / "evaluation.report.json"


def test_noop_subject_passes_with_a_schema_valid_report(noop_report: Path) -> None:
    from invarlock_core.schema_validation import validate_instance

    report = json.loads(noop_report.read_text())
    validate_instance(report, "evaluation-report")
    assert report["verdict"] == "PASS"
    assert report["reasons"] == []
    pm = report["primary_metric"]
    assert pm["ratio"] == 1.0
    assert pm["ci"] == [1.0, 1.0]
    assert len(pm["per_window"]["final"]) == 8
    assert len(pm["per_window"]["preview"]) == 2
    assert report["baseline"]["digest"] == report["subject"]["digest"]
    assert report["subject"]["label"] == "custom"
    assert report["guard_chain"]["note"].startswith("no guard plugins are installed")
    assert (noop_report.parent / "evaluation_report.md").read_text().count("Verdict: PASS") == 1
    assert json.loads((noop_report.parent / "evaluate_timing.json").read_text())["timings"]["total_s"] > 0
    runtime = json.loads((noop_report.parent / "runtime.manifest.json").read_text())
    assert runtime["schema"] == "invarlock/runtime-manifest-v1"
    assert runtime["report_digests"] == json.loads(noop_report.read_text())["digests"]
    # Per-window numbers and digests, never token ids: the report stays small.
    assert noop_report.stat().st_size < 20_000
    assert "input_ids" not in noop_report.read_text()


def test_verify_accepts_the_report_and_json_output(noop_report: Path) -> None:
    result = invarlock("verify", noop_report)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"OK  {noop_report} (verdict PASS)")
    as_json = invarlock("verify", noop_report.parent, "--json")
    data = json.loads(as_json.stdout)
    assert as_json.returncode == 0
    assert data["ok"] is True
    assert {c["name"] for c in data["reports"][0]["checks"]} >= {"schema", "pairing", "digests", "verdict", "profile"}


def test_verify_under_a_stricter_profile_fails_on_floors(noop_report: Path) -> None:
    result = invarlock("verify", noop_report, "--profile", "ci")
    assert result.returncode == 1
    assert "profile ci: 8 final windows, the floor is 240" in result.stderr


def test_damaged_subject_fails_with_exit_1_and_verifies(baseline: Path, tmp_path: Path) -> None:
    import torch

    generator = torch.Generator().manual_seed(0)

    def damage(name: str, t: Any) -> Any:
        if t.ndim == 2 and ".h." in name:
            return t + torch.randn(t.shape, generator=generator) * t.std() * 3
        return t

    subject = perturbed(baseline, tmp_path / "damaged", damage)
    out = tmp_path / "out"
    result = invarlock("evaluate", "--baseline", baseline, "--subject", subject, "--out", out, *QUICK, "--json")
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert summary["verdict"] == "FAIL"
    assert summary["exit_code"] == 1
    assert summary["ratio"] > 1.2
    assert any("exceeds the acceptance limit" in r for r in summary["reasons"])
    # An honest FAIL report verifies (exit 0) unless a PASS is required.
    assert invarlock("verify", out).returncode == 0
    assert invarlock("verify", out, "--require-pass").returncode == 1


def test_nan_subject_is_a_fail_with_a_reason_not_a_crash(baseline: Path, tmp_path: Path) -> None:
    state = {"done": False}

    def poison(name: str, t: Any) -> Any:
        if t.ndim == 2 and ".h.0." in name and not state["done"]:
            state["done"] = True
            t = t.clone()
            t[0, 0] = float("nan")
        return t

    subject = perturbed(baseline, tmp_path / "nan", poison)
    out = tmp_path / "out"
    result = invarlock("evaluate", "--baseline", baseline, "--subject", subject, "--out", out, *QUICK)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.startswith("FAIL  ratio n/a  CI n/a")
    assert "reason: subject has non-finite (NaN/Inf) weights in 1 tensor(s): transformer.h.0." in result.stdout
    assert "reason: subject produced non-finite (NaN/Inf) loss on" in result.stdout
    report = json.loads((out / "evaluation.report.json").read_text())
    assert report["validation"]["weights_finite"] is False
    assert invarlock("verify", out).returncode == 0


def test_hand_edited_pass_fails_verification(noop_report: Path, tmp_path: Path) -> None:
    report = json.loads(noop_report.read_text())
    report["primary_metric"]["per_window"]["final"][0]["subject_nll"] += 2.0  # hide a bad window
    edited = tmp_path / "edited.report.json"
    edited.write_text(json.dumps(report))
    result = invarlock("verify", edited)
    assert result.returncode == 1
    assert result.stdout == ""  # problems go to stderr
    assert "digest per_window mismatch" in result.stderr
    assert "recorded verdict PASS does not follow from the recorded numbers" in result.stderr


def test_unreadable_report_exits_2(tmp_path: Path) -> None:
    garbage = tmp_path / "evaluation.report.json"
    garbage.write_text("{not json")
    result = invarlock("verify", garbage)
    assert result.returncode == 2
    assert "INVALID" in result.stderr
    assert "is not valid JSON" in result.stderr
    assert invarlock("verify", tmp_path / "missing.json").returncode == 2


def test_missing_directory_is_one_line_exit_2(baseline: Path, tmp_path: Path) -> None:
    result = invarlock("evaluate", "--baseline", baseline, "--subject", tmp_path / "nope", "--out", tmp_path / "o", *QUICK)
    assert result.returncode == 2
    assert one_error_line(result) == f"error: model directory {tmp_path / 'nope'} does not exist"
    assert not (tmp_path / "o" / "evaluation.report.json").exists()


def test_corrupt_safetensors_is_one_line_exit_2(baseline: Path, tmp_path: Path) -> None:
    subject = tmp_path / "corrupt"
    shutil.copytree(baseline, subject)
    weights = subject / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    result = invarlock("evaluate", "--baseline", baseline, "--subject", subject, "--out", tmp_path / "o", *QUICK)
    assert result.returncode == 2
    assert one_error_line(result).startswith(f"error: {weights} is not a readable safetensors file")


def test_mismatched_tokenizer_is_one_line_exit_2(
    baseline: Path, tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    subject = tmp_path / "other_tok"
    shutil.copytree(baseline, subject)
    bert = tiny_model_dir("bert")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (subject / name).exists():
            (subject / name).unlink()
        if (bert / name).exists():
            shutil.copy(bert / name, subject / name)
    result = invarlock("evaluate", "--baseline", baseline, "--subject", subject, "--out", tmp_path / "o", *QUICK)
    assert result.returncode == 2
    assert one_error_line(result).startswith("error: the subject's tokenizer differs from the baseline's")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--final-windows", "many"), "argument --final-windows: expected an integer, got 'many'"),
        (("--tier", "loose"), "argument --tier: invalid choice: 'loose'"),
        (("--edit", "quant_rtn:4"), "argument --edit: not allowed with argument --subject"),
        (("--profile", "ci"), "--preview-windows 2 is below the ci profile's floor of 240"),
    ],
)
def test_bad_flags_are_one_line_exit_2(baseline: Path, tmp_path: Path, extra: tuple[str, ...], message: str) -> None:
    result = invarlock("evaluate", "--baseline", baseline, "--subject", baseline, "--out", tmp_path / "o", *QUICK, *extra)
    assert result.returncode == 2
    assert message in one_error_line(result)


def test_empty_dataset_is_one_line_exit_2(baseline: Path, tmp_path: Path) -> None:
    data = tmp_path / "empty.jsonl"
    data.write_text('{"text": ""}\n{"text": "   "}\n')
    result = invarlock(
        "evaluate", "--baseline", baseline, "--subject", baseline, "--out", tmp_path / "o",
        "--dataset", "local_jsonl", "--data-path", data, *QUICK,
    )
    assert result.returncode == 2
    assert one_error_line(result) == f"error: local_jsonl: {data} holds no non-empty texts"


def test_offline_wikitext_is_one_line_exit_2(baseline: Path, tmp_path: Path) -> None:
    result = invarlock(
        "evaluate", "--baseline", baseline, "--subject", baseline, "--out", tmp_path / "o",
        "--dataset", "wikitext2", *QUICK,
        env={"HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_CACHE": str(tmp_path / "hf" / "datasets")},
    )
    assert result.returncode == 2
    line = one_error_line(result)
    assert "not in the local cache and network access is off; pass --net" in line


def test_many_subjects_one_baseline_exit_with_the_worst_verdict(baseline: Path, tmp_path: Path) -> None:
    same = tmp_path / "same"
    shutil.copytree(baseline, same)
    damaged = perturbed(baseline, tmp_path / "damaged", lambda k, v: v * 3 if v.ndim == 2 and ".h." in k else v)
    out = tmp_path / "out"
    result = invarlock(
        "evaluate", "--baseline", baseline, "--subject", same, "--subject", damaged, "--out", out, "--json", *QUICK
    )
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)
    assert summary["exit_code"] == 1
    assert [s["verdict"] for s in summary["subjects"]] == ["PASS", "FAIL"]
    assert [Path(s["report"]) for s in summary["subjects"]] == [
        out / "same" / "evaluation.report.json",
        out / "damaged" / "evaluation.report.json",
    ]
    reports = [json.loads(Path(s["report"]).read_text()) for s in summary["subjects"]]
    assert reports[0]["primary_metric"]["per_window"]["final"][0]["baseline_nll"] == (
        reports[1]["primary_metric"]["per_window"]["final"][0]["baseline_nll"]
    )
    for s in summary["subjects"]:
        assert invarlock("verify", s["report"]).returncode == 0
    assert not (out / "evaluation.report.json").exists()


def test_many_subjects_with_one_name_is_one_line_exit_2(baseline: Path, tmp_path: Path) -> None:
    twin = tmp_path / "x" / baseline.name
    shutil.copytree(baseline, twin)
    result = invarlock("evaluate", "--baseline", baseline, "--subject", baseline, "--subject", twin, "--out", tmp_path / "o", *QUICK)
    assert result.returncode == 2
    assert "two subjects are named" in one_error_line(result)


def test_final_windows_0_under_dev_names_the_floor_without_a_dev_hint(baseline: Path, tmp_path: Path) -> None:
    result = invarlock(
        "evaluate", "--baseline", baseline, "--subject", baseline, "--out", tmp_path / "o", *QUICK, "--final-windows", "0"
    )
    line = one_error_line(result)
    assert result.returncode == 2
    assert line == "error: --final-windows 0 is below the dev profile's floor of 4"


@pytest.mark.parametrize(
    "subject_args",
    [("--edit", "no_such_edit"), ("--subject", "{bert}")],
    ids=["unknown-edit", "tokenizer-mismatch"],
)
def test_input_errors_leave_no_out_directory(
    baseline: Path, tmp_path: Path, tiny_model_dir: Callable[[str], Path], subject_args: tuple[str, ...]
) -> None:
    out = tmp_path / "new" / "out"
    args = [a.format(bert=tiny_model_dir("bert")) for a in subject_args]
    result = invarlock("evaluate", "--baseline", baseline, *args, "--out", out, *QUICK)
    assert result.returncode == 2, result.stderr
    one_error_line(result)
    assert not out.exists()
    assert not out.parent.exists()
