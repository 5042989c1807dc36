"""VeriscopeCallback with a real transformers Trainer and a tiny GPT-2 built offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from transformers import Trainer, TrainingArguments

from veriscope_gate.callback import VeriscopeCallback, find_last_block
from veriscope_gate.capsule import RESULTS, SUMMARY
from veriscope_gate.errors import VeriscopeUsageError
from veriscope_gate.runners.hf import build_tiny_gpt2, char_dataset
from veriscope_gate.runners.hf import main as hf_main
from veriscope_gate.validate import validate_capsule

FAST = {"gate_warmup_iters": 40}


def _trainer(tmp: Path, callback: VeriscopeCallback, steps: int, **kwargs: Any) -> Trainer:
    import torch

    torch.set_num_threads(1)
    ds, vocab = char_dataset(64)
    model = build_tiny_gpt2(vocab)
    args = TrainingArguments(output_dir=str(tmp / "trainer"), max_steps=steps, per_device_train_batch_size=8,
                             learning_rate=3e-3, lr_scheduler_type="constant", report_to=[], use_cpu=True,
                             disable_tqdm=True, logging_steps=1000, dataloader_num_workers=0,
                             **({"save_strategy": "no"} | kwargs))
    return Trainer(model=model, args=args, train_dataset=ds, callbacks=[callback])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, VeriscopeCallback]:
    tmp = tmp_path_factory.mktemp("cb")
    cb = VeriscopeCallback(str(tmp / "gate"), gate_preset="cpu_smoke", overrides=FAST)
    _trainer(tmp, cb, 120).train()
    return tmp / "gate", cb


@pytest.mark.slow
def test_callback_gates_a_real_trainer_run(trained: tuple[Path, VeriscopeCallback]) -> None:
    outdir, cb = trained
    results = json.loads((outdir / RESULTS).read_text())
    assert [g["iter"] for g in results["gates"]] == [40, 80, 120]
    assert results["gates"][0]["decision"] == "skip"  # no past window yet
    assert all(g["decision"] in ("pass", "warn", "fail") for g in results["gates"][1:])
    # a probe every metric_interval (2) optimizer steps: exactly 60 probes, no more
    assert len(results["metrics"]) == 60
    assert [m["iter"] for m in results["metrics"]][:3] == [2, 4, 6]
    assert all(m["loss"] is not None for m in results["metrics"])
    summary = json.loads((outdir / SUMMARY).read_text())
    assert summary["profile"] == {"gate_preset": "cpu_smoke", "overrides": FAST}
    assert summary["timing"]["probes"] == 60
    assert summary["timing"]["gate_wall_s"] > 0
    assert validate_capsule(outdir, require_governance=True).ok
    assert cb.probe is None  # hooks removed at train end
    sig = json.loads((outdir / "window_signature.json").read_text())
    assert sig["probe"]["layer"] == "transformer.h.1"
    assert sig["runner"]["model_type"] == "gpt2"


@pytest.mark.slow
def test_stop_on_fail_stops_training(tmp_path: Path) -> None:
    outdir = tmp_path / "stop"
    code = hf_main(["--outdir", str(outdir), "--gate-preset", "cpu_smoke", "--max_steps", "480",
                    "--pathology", "data_permutation", "--onset", "281", "--stop-on-fail"])
    assert code == 0
    summary = json.loads((outdir / SUMMARY).read_text())
    results = json.loads((outdir / RESULTS).read_text())
    assert summary["final_decision"] == "fail"
    assert summary["counts"]["evaluated"] >= 2  # clean checks at 200..280 before the onset
    assert 281 <= summary["first_fail_iter"] <= 360  # within 2 windows of the onset
    assert results["gates"][-1]["iter"] == summary["first_fail_iter"]  # training stopped there
    assert validate_capsule(outdir).ok


@pytest.mark.slow
def test_state_is_saved_in_checkpoints_and_resumed(tmp_path: Path) -> None:
    outdir = tmp_path / "resume"
    first = VeriscopeCallback(str(outdir), gate_preset="cpu_smoke", overrides=FAST, close_on_train_end=False)
    _trainer(tmp_path, first, 80, save_strategy="steps", save_steps=80).train()
    run_id = first.session.run_id if first.session else None
    assert run_id is not None
    second = VeriscopeCallback(str(outdir), gate_preset="cpu_smoke", overrides=FAST)
    trainer = _trainer(tmp_path, second, 160, save_strategy="no")
    trainer.train(resume_from_checkpoint=str(tmp_path / "trainer" / "checkpoint-80"))
    results = json.loads((outdir / RESULTS).read_text())
    assert results["run_id"] == run_id
    assert [g["iter"] for g in results["gates"]] == [40, 80, 120, 160]
    assert len(results["metrics"]) == 80
    assert validate_capsule(outdir).ok


def test_prerequisites_fail_fast(tmp_path: Path) -> None:
    ds, vocab = char_dataset(64)
    model = build_tiny_gpt2(vocab)
    assert find_last_block(model)[0] == "transformer.h.1"
    with pytest.raises(VeriscopeUsageError, match=r"no submodule 'transformer\.h\.9'"):
        find_last_block(model, "transformer.h.9")
    cb = VeriscopeCallback(str(tmp_path / "x"), layer="transformer.h.9")
    with pytest.raises(VeriscopeUsageError, match="no submodule"):
        cb.on_train_begin(None, None, None, model=model)
    assert not (tmp_path / "x").exists()  # nothing written before the run really starts
    with pytest.raises(Exception, match="unknown gate preset"):
        VeriscopeCallback(str(tmp_path / "y"), gate_preset="nope")
    _ = ds
