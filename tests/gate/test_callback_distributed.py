"""VeriscopeCallback across two real processes (torch.distributed, gloo, CPU).

Each scenario runs this file as a script in two subprocesses (ranks 0 and 1 of a gloo group on
127.0.0.1) and the tests read back what every rank recorded:

* ``trainer``: a real ``Trainer`` under DDP (each rank trains on its own shard of the data), once
  without and once with ``stop_on_fail``;
* ``hooks``: the callback's hooks driven by hand around real forward passes of a tiny GPT-2, where
  rank 1 produces unevaluable metrics (a one-token batch), skips a probe step's forward, and
  finally loads no metric plugin at all.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from gate_helpers import veriscope_cmd

from veriscope_gate.callback import VeriscopeCallback, _pack_probe, _unpack_probe
from veriscope_gate.capsule import RESULTS, SUMMARY
from veriscope_gate.serialization import unstructure
from veriscope_gate.session import GateSession

WORLD = 2
DEADLINE_S = 120.0
WINDOWS = {"gate_window": 20, "metric_interval": 1, "gate_warmup_iters": 20}
"""Short windows: gate checks at 20 (skip, no past window), 40, 60, 80."""
ALWAYS_FAIL = WINDOWS | {"gain_thresh": 100.0}
"""No run gains 100 bits per step: every evaluated check fails on the loss-gain rule."""
EIGEN_METRICS = ("eff_dim", "rankme", "var_out_k")
"""The built-in metrics that a one-token batch (zero covariance) leaves unevaluable (NaN)."""


class _Recorder(VeriscopeCallback):
    """The real callback that also keeps what this rank measured before the ranks agreed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.local: list[dict[str, Any]] = []

    def _agree(self, values: dict[str, float], loss: float | None, *,
               sketched: bool) -> tuple[dict[str, float], float | None] | None:
        self.local.append({"values": dict(values), "loss": loss, "sketched": sketched})
        return super()._agree(values, loss, sketched=sketched)


# -- the workers (run as ``python test_callback_distributed.py SCENARIO DIR``) ------------------
def _report(cb: _Recorder, global_step: int) -> dict[str, Any]:
    assert cb.session is not None
    return {
        "local": cb.local,
        "metrics": unstructure(cb.session.metrics),
        "gates": unstructure(cb.session.gates),
        "global_step": global_step,
    }


def _trainer_worker(rank: int, tmp: Path) -> dict[str, Any]:
    import torch
    from transformers import Trainer, TrainingArguments

    from veriscope_gate.runners.hf import build_tiny_gpt2, char_dataset

    torch.set_num_threads(1)
    ds, vocab = char_dataset(64)
    out: dict[str, Any] = {}
    runs = {  # outdir, overrides, stop_on_fail, save a checkpoint at 40, resume from run a's
        "a": (tmp / f"a-rank{rank}", WINDOWS, False, True, None),
        "b": (tmp / "b-shared", ALWAYS_FAIL, True, False, None),
        "c": (tmp / f"a-rank{rank}", WINDOWS, False, False, tmp / "trainer-a" / "checkpoint-40"),
    }
    for key, (outdir, overrides, stop, save, resume) in runs.items():
        cb = _Recorder(str(outdir), gate_preset="cpu_smoke", overrides=overrides, stop_on_fail=stop)
        args = TrainingArguments(
            output_dir=str(tmp / f"trainer-{'a' if key == 'c' else key}"), max_steps=80, per_device_train_batch_size=8,
            learning_rate=3e-3, lr_scheduler_type="constant", report_to=[], use_cpu=True,
            disable_tqdm=True, logging_steps=1000, dataloader_num_workers=0,
            save_strategy="steps" if save else "no", save_steps=40, ddp_timeout=int(DEADLINE_S),
        )
        trainer = Trainer(model=build_tiny_gpt2(vocab), args=args, train_dataset=ds, callbacks=[cb])
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        out[key] = _report(cb, int(trainer.state.global_step))
        out[key]["run_id"] = cb.session.run_id if cb.session else None
    return out


def _hooks_plan(rank: int, step: int) -> str:
    """What rank ``rank`` feeds the model at ``step``: a batch, one token, or no forward at all."""
    if step == 5:
        return "none"  # no rank sketches: nothing may be recorded
    if rank == 1 and step == 2:
        return "one_token"  # zero covariance: eff_dim, rankme, var_out_k are NaN, loss is NaN
    if rank == 1 and step == 3:
        return "none"  # this rank's hook never fires on an armed step
    return "batch"


def _hooks_worker(rank: int, tmp: Path) -> dict[str, Any]:
    from datetime import timedelta

    import torch
    from transformers import TrainerControl, TrainerState

    from veriscope_gate.errors import VeriscopeUsageError
    from veriscope_gate.plugins import DISABLE_ENV
    from veriscope_gate.runners.hf import build_tiny_gpt2, char_dataset

    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", timeout=timedelta(seconds=DEADLINE_S))
    ds, vocab = char_dataset(64)
    model = build_tiny_gpt2(vocab)
    cb = _Recorder(str(tmp / f"hooks-rank{rank}"), gate_preset="cpu_smoke",
                   overrides={"metric_interval": 1, "gate_window": 40})
    state, control = TrainerState(is_world_process_zero=rank == 0), TrainerControl()
    with torch.no_grad():
        for step in range(1, 6):
            state.global_step = step - 1
            cb.on_step_begin(None, state, control, model=model)
            plan = _hooks_plan(rank, step)
            if plan != "none":
                rows = [ds[16 * step + 8 * rank + i]["input_ids"] for i in range(8)]
                x = torch.stack(rows) if plan == "batch" else rows[0][:1].unsqueeze(0)
                model(input_ids=x, labels=x)
            state.global_step = step
            cb.on_step_end(None, state, control)
    cb.finalize()
    out: dict[str, Any] = {"hooks": _report(cb, 5)}

    if rank == 1:
        os.environ[DISABLE_ENV] = "veriscope_gate.metrics"  # this rank registers no metric
    mismatched = VeriscopeCallback(str(tmp / f"mismatch-rank{rank}"), gate_preset="cpu_smoke")
    try:
        mismatched.on_step_begin(None, TrainerState(is_world_process_zero=rank == 0), control,
                                 model=model)
        out["mismatch_error"] = None
    except VeriscopeUsageError as exc:
        out["mismatch_error"] = str(exc)
    # Both ranks leave their last collective before either tears the group down: a rank whose
    # peer (or the store on rank 0) is already gone could abort at exit in gloo's threads.
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    return out


def _worker(scenario: str, tmp: Path) -> int:
    rank = int(os.environ["RANK"])
    run = {"trainer": _trainer_worker, "hooks": _hooks_worker}[scenario]
    result = run(rank, tmp)
    (tmp / f"rank{rank}.json").write_text(json.dumps(result), encoding="utf-8")
    return 0


# -- the launcher -------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _launch(scenario: str, tmp: Path) -> list[dict[str, Any]]:
    """Run ``scenario`` on two ranks; every rank's result (fails, never hangs, after 120 s)."""
    port = _free_port()
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    for rank in range(WORLD):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                   LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_WORLD_SIZE=str(WORLD),
                   OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
        log = tmp / f"rank{rank}.log"
        with log.open("wb") as sink:
            procs.append((subprocess.Popen([sys.executable, __file__, scenario, str(tmp)], env=env,
                                           stdout=sink, stderr=subprocess.STDOUT), log))
    deadline = time.monotonic() + DEADLINE_S

    def logs() -> str:
        return "".join(f"\n--- rank {r} ---\n{log.read_text(errors='replace')[-2000:]}"
                       for r, (_, log) in enumerate(procs))

    try:
        for rank, (proc, _) in enumerate(procs):
            try:
                code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"rank {rank} of {scenario!r} still running after {DEADLINE_S:.0f} s "
                            f"(deadlock?){logs()}")
            assert code == 0, f"rank {rank} of {scenario!r} exited {code}{logs()}"
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return [json.loads((tmp / f"rank{rank}.json").read_text(encoding="utf-8")) for rank in range(WORLD)]


@pytest.fixture(scope="module")
def trainer_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("ddp-trainer")
    return tmp, _launch("trainer", tmp)


@pytest.fixture(scope="module")
def hooks_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("ddp-hooks")
    return tmp, _launch("hooks", tmp)


# -- helpers of the assertions ------------------------------------------------------------------
def _finite_mean(xs: Sequence[float | None]) -> float | None:
    finite = [x for x in xs if x is not None and math.isfinite(x)]
    return sum(finite) / len(finite) if finite else None


def _rank_mean(locals_: Sequence[Mapping[str, Any]]) -> tuple[dict[str, float | None], float | None]:
    """What the ranks should agree on for one probe: the mean over ranks with a finite value."""
    names = sorted({n for loc in locals_ for n in loc["values"]})
    values = {n: _finite_mean([loc["values"].get(n) for loc in locals_]) for n in names}
    return values, _finite_mean([loc["loss"] for loc in locals_])


# -- the tests ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_every_rank_records_the_same_probes_and_decisions(trainer_runs: tuple[Path, list[dict[str, Any]]]) -> None:
    _, (r0, r1) = trainer_runs
    run0, run1 = r0["a"], r1["a"]
    assert [g["iter"] for g in run0["gates"]] == [20, 40, 60, 80]
    assert run0["gates"][0]["decision"] == "skip"
    assert all(g["audit"]["evaluated"] for g in run0["gates"][1:])
    assert run0["gates"] == run1["gates"]  # decisions, worst_DW, p-values: the whole audit
    assert run0["metrics"] == run1["metrics"]
    assert len(run0["metrics"]) == 80
    # the ranks trained on different shards, so what each measured differs at every probe
    assert all(a["values"] != b["values"] for a, b in zip(run0["local"], run1["local"], strict=True))


@pytest.mark.slow
def test_recorded_values_are_the_rank_mean_and_decide_like_one_process(
    trainer_runs: tuple[Path, list[dict[str, Any]]], tmp_path: Path,
) -> None:
    _, (r0, r1) = trainer_runs
    run0, run1 = r0["a"], r1["a"]
    single = GateSession(tmp_path / "single", gate_preset="cpu_smoke", overrides=WINDOWS, write=False)
    for record, loc0, loc1 in zip(run0["metrics"], run0["local"], run1["local"], strict=True):
        values, loss = _rank_mean([loc0, loc1])
        assert record["values"] == values  # exactly: (a + b) / 2 in float64 on every rank
        assert record["loss"] == loss
        single.record(record["iter"], values, loss)  # type: ignore[arg-type]
        if single.is_gate_step(record["iter"]):
            single.evaluate(record["iter"])
    assert unstructure(single.gates) == run0["gates"]


@pytest.mark.slow
def test_only_world_rank_zero_writes_the_capsule(trainer_runs: tuple[Path, list[dict[str, Any]]]) -> None:
    tmp, _ = trainer_runs
    assert (tmp / "a-rank0" / RESULTS).is_file()
    assert not (tmp / "a-rank1").exists()  # rank 1's own outdir is never created
    shared = tmp / "b-shared"  # both ranks were given the same outdir: written once
    results = json.loads((shared / RESULTS).read_text(encoding="utf-8"))
    assert [m["iter"] for m in results["metrics"]] == list(range(1, 41))
    events = [json.loads(line)["event"] for line in
              (shared / "governance_log.jsonl").read_text(encoding="utf-8").splitlines()]
    assert events.count("session_opened_v1") == 1
    assert events.count("session_closed_v1") == 1
    done = subprocess.run(veriscope_cmd("validate", str(shared)), capture_output=True, text=True,
                          timeout=DEADLINE_S, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_stop_on_fail_stops_every_rank_at_the_same_step(trainer_runs: tuple[Path, list[dict[str, Any]]]) -> None:
    tmp, (r0, r1) = trainer_runs
    run0, run1 = r0["b"], r1["b"]
    assert [g["decision"] for g in run0["gates"]] == ["skip", "fail"]
    assert run0["gates"] == run1["gates"]
    assert run0["global_step"] == run1["global_step"] == 40  # max_steps was 80
    summary = json.loads((tmp / "b-shared" / SUMMARY).read_text(encoding="utf-8"))
    assert summary["first_fail_iter"] == 40


@pytest.mark.slow
def test_every_rank_resumes_the_gate_from_rank_zeros_checkpoint(
    trainer_runs: tuple[Path, list[dict[str, Any]]],
) -> None:
    """Rank 1's capsule directory never exists, so its run id can only come from the checkpoint."""
    tmp, (r0, r1) = trainer_runs
    first, resumed = r0["a"], r0["c"]
    assert r1["c"]["run_id"] == resumed["run_id"] == first["run_id"]
    assert r1["c"]["gates"] == resumed["gates"]
    assert resumed["gates"][:2] == first["gates"][:2]  # restored from the checkpoint at 40
    assert [g["iter"] for g in resumed["gates"]] == [20, 40, 60, 80]
    assert len(resumed["local"]) == 40  # probes of steps 41..80 only
    results = json.loads((tmp / "a-rank0" / RESULTS).read_text(encoding="utf-8"))
    assert results["run_id"] == first["run_id"]
    assert [m["iter"] for m in results["metrics"]] == list(range(1, 81))
    assert not (tmp / "a-rank1").exists()


@pytest.mark.slow
def test_unevaluable_values_and_missing_sketches_average_over_the_ranks_that_have_them(
    hooks_runs: tuple[Path, list[dict[str, Any]]],
) -> None:
    _, (r0, r1) = hooks_runs
    run0, run1 = r0["hooks"], r1["hooks"]
    assert run0["metrics"] == run1["metrics"]
    assert [m["iter"] for m in run0["metrics"]] == [1, 2, 3, 4]  # step 5: no rank sketched
    # every rank joined every probe step's reduction, sketch or not
    assert [loc["sketched"] for loc in run1["local"]] == [True, True, False, True, False]
    one_token = run1["local"][1]
    assert all(math.isnan(one_token["values"][m]) for m in EIGEN_METRICS)
    assert math.isfinite(one_token["values"]["cos_disp"])
    assert one_token["loss"] is None or math.isnan(one_token["loss"])
    by_iter = {m["iter"]: m for m in run0["metrics"]}
    for step in (1, 2, 3, 4):
        values, loss = _rank_mean([run0["local"][step - 1], run1["local"][step - 1]])
        assert by_iter[step]["values"] == values
        assert by_iter[step]["loss"] == loss
    # the unevaluable metrics and the missing sketch take rank 0's value alone, not half of it
    assert {m: by_iter[2]["values"][m] for m in EIGEN_METRICS} == {
        m: run0["local"][1]["values"][m] for m in EIGEN_METRICS}
    assert by_iter[3]["values"] == run0["local"][2]["values"]
    assert by_iter[2]["loss"] == run0["local"][1]["loss"]


@pytest.mark.slow
def test_ranks_with_different_metric_plugins_fail_together(hooks_runs: tuple[Path, list[dict[str, Any]]]) -> None:
    tmp, (r0, r1) = hooks_runs
    for result in (r0, r1):
        assert result["mismatch_error"] is not None
        assert "ranks register different Veriscope metrics" in result["mismatch_error"]
    assert "this rank: none" in r1["mismatch_error"]
    assert not (tmp / "mismatch-rank0").exists()  # failed before anything was written


_VALUE = st.one_of(st.none(), st.just(math.nan), st.just(math.inf),
                   st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
_NAMES = ("a", "b", "c")


@given(st.lists(st.tuples(st.dictionaries(st.sampled_from(_NAMES), _VALUE), _VALUE, st.booleans()),
                min_size=1, max_size=5))
def test_summed_probe_vectors_decode_to_finite_means(ranks: list[tuple[dict[str, float | None], float | None, bool]]) -> None:
    """Whatever each rank measured, the vectors have one length and decode to finite-only means."""
    vectors = [_pack_probe(_NAMES, {k: v for k, v in values.items() if v is not None}, loss, sketched)
               for values, loss, sketched in ranks]
    assert {len(v) for v in vectors} == {3 + 2 * len(_NAMES)}
    total = [sum(column) for column in zip(*vectors, strict=True)]  # what all_reduce(SUM) does
    decoded = _unpack_probe(_NAMES, total)
    if not any(sketched for _, _, sketched in ranks):
        assert decoded is None
        return
    assert decoded is not None
    values, loss = decoded
    # a rank's missing or non-finite value adds 0.0, so the sums are the finite sums exactly
    assert loss == _finite_mean([r[1] for r in ranks])
    for name in _NAMES:
        expected = _finite_mean([r[0].get(name) for r in ranks])
        assert values[name] == expected if expected is not None else math.isnan(values[name])

if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1], Path(sys.argv[2])))
