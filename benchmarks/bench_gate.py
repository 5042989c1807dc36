"""Veriscope gate acceptance benchmark: FAR, Delay_W and overhead, ours vs the reference rule.

Run: ``python benchmarks/bench_gate.py`` (quick, CPU, a couple of minutes on 2 cores) or
``--full`` (canonical tuned_v0 cadence, longer runs, more seeds).

1. Null false-alarm rate of one gate check at the window size actually used (n = 20 probes per
   window), i.i.d. metric noise, 200 checks per spread: our permutation-calibrated gate vs the
   reference rule (fixed ε threshold), side by side.
2. Synthetic shift power: fraction of shifts detected at the first check after the onset.
3. Real training (the built-in tiny GPT on the shipped text, CPU): control runs (FAR post-warmup)
   and injected pathologies (data permutation, LR spike, representation collapse) at a known onset
   (Delay_W). Every recorded metric stream is replayed through both gates, so the comparison is on
   identical data.
4. Overhead: the same training with and without the gate, alternating in this process (median of
   per-pair ratios, wall clock and this process's CPU time — the latter stays meaningful when other
   jobs share the cores), for the built-in GPT loop and for a Hugging Face Trainer with
   VeriscopeCallback, at the canonical tuned_v0 cadence.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from typing import Any

import numpy as np

from veriscope_gate.controls import GateControls, load_preset
from veriscope_gate.engine import GateEngine
from veriscope_gate.metrics import builtin_metrics

RANGES = {m.name: m.calibration_range for m in builtin_metrics()}


def null_far(preset: str, spread: float, checks: int = 200, seed: int = 0) -> float:
    c = load_preset(preset, {"gate_warmup_iters": 0})
    engine = GateEngine(c, RANGES)
    rng = np.random.default_rng(seed)
    alarms = done = 0
    it = 0
    while done < checks:
        it += c.metric_interval
        engine.record(it, {m: lo + (hi - lo) * (0.5 + spread * rng.standard_normal())
                           for m, (lo, hi) in RANGES.items()})
        if it % c.gate_window == 0 and it >= 2 * c.gate_window:
            alarms += engine.check(it).decision != "pass"
            done += 1
    return alarms / checks


def shift_power(preset: str, shift: float, trials: int = 40) -> float:
    c = load_preset(preset, {"gate_warmup_iters": 0})
    hits = 0
    for t in range(trials):
        engine = GateEngine(c, RANGES)
        rng = np.random.default_rng(1000 + t)
        onset = 3 * c.gate_window
        for it in range(c.metric_interval, 4 * c.gate_window + 1, c.metric_interval):
            off = shift if it > onset else 0.0
            engine.record(it, {m: lo + (hi - lo) * (0.4 + off + 0.02 * rng.standard_normal())
                               for m, (lo, hi) in RANGES.items()})
        hits += engine.check(4 * c.gate_window).decision != "pass"
    return hits / trials


def record_stream(pathology: str, onset: int | None, iters: int, seed: int, c: GateControls) -> list[tuple[int, dict[str, float], float]]:
    from veriscope_gate.probe import LayerProbe
    from veriscope_gate.tinygpt import GPTConfig, train_gpt

    stream: list[tuple[int, dict[str, float], float]] = []
    metrics = list(builtin_metrics())
    train_gpt(
        GPTConfig(max_iters=iters, seed=seed, pathology=pathology, onset=onset),  # type: ignore[arg-type]
        make_probe=lambda block, h, dev: LayerProbe(block, metrics, hidden_size=h, seed=seed, device=dev),
        on_probe=lambda it, values, loss: stream.append((it, values, loss)),
        metric_interval=c.metric_interval, gate_window=c.gate_window,
    )
    return stream


def replay(stream: list[tuple[int, dict[str, float], float]], c: GateControls, iters: int) -> dict[int, str]:
    engine = GateEngine(c, RANGES)
    by_iter = {it: (v, loss) for it, v, loss in stream}
    out: dict[int, str] = {}
    for it in range(1, iters + 1):
        if it in by_iter:
            engine.record(it, *by_iter[it])
        if it % c.gate_window == 0:
            out[it] = engine.check(it).decision
    return out


def far_of(decisions: dict[int, str], warmup: int) -> tuple[int, int]:
    evaluated = [d for it, d in decisions.items() if it >= warmup and d != "skip"]
    return sum(d in ("warn", "fail") for d in evaluated), len(evaluated)


def delay_of(decisions: dict[int, str], onset: int, warmup: int, w: int) -> float | None:
    t0 = max(onset, warmup)
    hit = next((it for it in sorted(decisions) if it >= t0 and decisions[it] in ("warn", "fail")), None)
    return None if hit is None else (hit - t0) / w


def _probe_factory(probes: list[Any], metrics: list[Any], seed: int) -> Any:
    from veriscope_gate.probe import LayerProbe

    def make(block: Any, h: int, dev: str) -> Any:
        probes.append(LayerProbe(block, metrics, hidden_size=h, seed=seed, device=dev))
        return probes[-1]

    return make


def _gate_fn(session: Any) -> Any:
    def gate(it: int) -> bool:
        session.evaluate(it)
        return False

    return gate


class _Clock:
    """Wall-clock and this process's CPU time (robust when other jobs share the cores)."""

    def __enter__(self) -> _Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def _median_ratios(pairs: list[tuple[_Clock, _Clock]]) -> tuple[float, float, tuple[float, float]]:
    """Median wall and CPU overheads over the pairs, and the wall overhead's interquartile range."""
    walls = [g.wall / p.wall - 1.0 for p, g in pairs]
    cpu = float(np.median([g.cpu / p.cpu for p, g in pairs])) - 1.0
    low, high = np.percentile(walls, [25, 75])
    return float(np.median(walls)), cpu, (float(low), float(high))


def gpt_overhead(
    c: GateControls, iters: int, pairs: int
) -> tuple[float, float, tuple[float, float], float]:
    """(wall overhead, CPU overhead, gate's own measured share) in the built-in GPT loop.

    Plain and gated runs alternate after a warm-up run (the order flips every pair, and the pair
    count is even, so either order is first equally often); the medians of the per-pair ratios
    are reported.
    """
    from veriscope_gate.probe import LayerProbe
    from veriscope_gate.session import GateSession
    from veriscope_gate.tinygpt import GPTConfig, train_gpt

    metrics = list(builtin_metrics())
    results: list[tuple[_Clock, _Clock]] = []
    share: list[float] = []
    train_gpt(GPTConfig(max_iters=iters // 4, seed=0))  # warm-up: the first run is always slower
    for r in range(pairs):
        clocks: dict[bool, _Clock] = {}
        for gated in ((False, True) if r % 2 == 0 else (True, False)):
            with tempfile.TemporaryDirectory() as tmp:
                if not gated:
                    with _Clock() as clock:
                        train_gpt(GPTConfig(max_iters=iters, seed=r))
                else:
                    session = GateSession(tmp, controls=c, gate_preset="bench", metrics=metrics, write=False)
                    probes: list[LayerProbe] = []
                    with _Clock() as clock:
                        train_gpt(GPTConfig(max_iters=iters, seed=r), make_probe=_probe_factory(probes, metrics, r),
                                  on_probe=session.record, on_gate=_gate_fn(session),
                                  metric_interval=c.metric_interval, gate_window=c.gate_window)
                    share.append((session.gate_wall_s + sum(p.elapsed_s for p in probes)) / clock.wall)
                clocks[gated] = clock
        results.append((clocks[False], clocks[True]))
    wall, cpu, spread = _median_ratios(results)
    return wall, cpu, spread, float(np.median(share))


def _timed_callback(cls: Any) -> Any:
    """``cls`` that adds up the wall time spent in its Trainer events, its loss hook and its probe's
    forward hook (``own_s``): the callback's own cost, measured directly."""

    def timed(name: str) -> Any:
        method = getattr(cls, name)

        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return method(self, *args, **kwargs)
            finally:
                self.own_s += time.perf_counter() - start

        return wrapper

    def finalize(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.probe is not None:  # the probe is dropped by finalize: keep its hook time
            self.own_s += self.probe.sketch_s
        return cls.finalize(self, *args, **kwargs)

    names = ("on_train_begin", "on_step_begin", "on_step_end", "on_train_end", "_capture_loss")
    body: dict[str, Any] = {"own_s": 0.0, "finalize": finalize, **{n: timed(n) for n in names}}
    return type("TimedVeriscopeCallback", (cls,), body)


def hf_overhead(preset: str, steps: int, pairs: int) -> tuple[float, float, tuple[float, float], float]:
    """(wall overhead, CPU overhead, wall IQR, callback's own measured share) of VeriscopeCallback
    on a HF Trainer run: medians over pairs of runs with and without it."""
    import torch
    from transformers import Trainer, TrainingArguments

    from veriscope_gate.callback import VeriscopeCallback
    from veriscope_gate.runners.hf import build_tiny_gpt2, char_dataset

    torch.set_num_threads(1)
    timed_cls = _timed_callback(VeriscopeCallback)
    ds, vocab = char_dataset(64)
    with tempfile.TemporaryDirectory() as tmp:  # warm-up: the first run is always slower
        warm = TrainingArguments(output_dir=tmp, max_steps=steps // 4, per_device_train_batch_size=8,
                                 report_to=[], use_cpu=True, disable_tqdm=True, save_strategy="no")
        Trainer(model=build_tiny_gpt2(vocab, seed=0), args=warm, train_dataset=ds).train()
    results: list[tuple[_Clock, _Clock]] = []
    share: list[float] = []
    for r in range(pairs):
        clocks: dict[bool, _Clock] = {}
        for with_gate in ((False, True) if r % 2 == 0 else (True, False)):
            with tempfile.TemporaryDirectory() as tmp:
                args = TrainingArguments(output_dir=tmp, max_steps=steps, per_device_train_batch_size=8,
                                         learning_rate=3e-3, report_to=[], use_cpu=True, disable_tqdm=True,
                                         logging_steps=10_000, save_strategy="no", seed=r)
                callback = timed_cls(f"{tmp}/gate", gate_preset=preset) if with_gate else None
                trainer = Trainer(model=build_tiny_gpt2(vocab, seed=r), args=args, train_dataset=ds,
                                  callbacks=[callback] if callback is not None else [])
                with _Clock() as clock:
                    trainer.train()
                if callback is not None:
                    share.append(callback.own_s / clock.wall)
                clocks[with_gate] = clock
        results.append((clocks[False], clocks[True]))
    wall, cpu, spread = _median_ratios(results)
    return wall, cpu, spread, float(np.median(share))


def _show(delay: float | None) -> str:
    return "missed" if delay is None else f"{delay:.2f}"


def pct(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _overhead_section(full: bool) -> None:
    canonical = load_preset("tuned_v0")
    print("== 4. overhead at the tuned_v0 cadence (probe every 5 steps, check every 100): same training")
    print("   with vs without the gate, alternating in this process: median of per-pair ratios [IQR],")
    print("   and the gate's own time measured inside it (the direct figure; the ratio also carries noise)")
    iters = 1000 if full else 300
    wall, cpu, (low, high), share = gpt_overhead(canonical, iters, pairs=8 if full else 6)
    print(f"built-in GPT loop, {iters} iters: wall-clock {pct(wall)} [{pct(low)}, {pct(high)}], "
          f"CPU time {pct(cpu)}; gate's own measured share {pct(share)}")
    steps = 400 if full else 150
    wall, cpu, (low, high), share = hf_overhead("tuned_v0", steps, pairs=6 if full else 4)
    print(f"HF Trainer + VeriscopeCallback, {steps} steps: wall-clock {pct(wall)} [{pct(low)}, {pct(high)}], "
          f"CPU time {pct(cpu)}; callback's own measured share {pct(share)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="tuned_v0 cadence, longer runs, more seeds")
    parser.add_argument("--skip-training", action="store_true", help="only the synthetic parts")
    parser.add_argument("--only-overhead", action="store_true", help="only section 4")
    opts = parser.parse_args()
    t_start = time.perf_counter()

    if opts.only_overhead:
        _overhead_section(opts.full)
        print(f"total {time.perf_counter() - t_start:.1f} s")
        return 0
    print("== 1. null false-alarm rate per check (i.i.d. noise, n = 20 probes/window, 200 checks)")
    print(f"{'spread/range':>12}  {'ours (tuned_v0)':>16}  {'reference rule':>15}")
    for spread in (0.005, 0.01, 0.02, 0.05):
        ours, ref = null_far("tuned_v0", spread), null_far("reference_v0", spread)
        print(f"{spread:>12.3f}  {pct(ours):>16}  {pct(ref):>15}")

    print("== 2. detection at the first check after a shift (40 trials; shift in range units, noise 0.02)")
    print(f"{'shift':>12}  {'ours':>16}  {'reference rule':>15}")
    for shift in (0.05, 0.1, 0.2):
        print(f"{shift:>12.2f}  {pct(shift_power('tuned_v0', shift)):>16}  {pct(shift_power('reference_v0', shift)):>15}")

    if opts.skip_training:
        print(f"total {time.perf_counter() - t_start:.1f} s")
        return 0

    preset = "tuned_v0" if opts.full else "cpu_smoke"
    ours_c = load_preset(preset)
    ref_c = load_preset("reference_v0", {k: getattr(ours_c, k) for k in
                                         ("metric_interval", "gate_window", "gate_warmup_iters")})
    w, k = ours_c.gate_window, ours_c.gate_warmup_iters
    control_iters = 3000 if opts.full else 700
    seeds = (0, 1, 2) if opts.full else (0, 1)
    onset = k + 2 * w + 1
    inj_iters = onset + 3 * w - 1
    print(f"== 3. tiny GPT on CPU, preset {preset} (W={w}, warmup={k}); reference rule replayed on the same streams")
    alarms = {"ours": [0, 0], "ref": [0, 0]}
    for seed in seeds:
        stream = record_stream("none", None, control_iters, seed, ours_c)
        for label, c in (("ours", ours_c), ("ref", ref_c)):
            a, n = far_of(replay(stream, c, control_iters), k)
            alarms[label][0] += a
            alarms[label][1] += n
    for label in ("ours", "ref"):
        a, n = alarms[label]
        print(f"control FAR post-warmup [{label:>4}]: {pct(a / n if n else None)} ({a}/{n} checks, {len(seeds)} runs)")
    print(f"{'pathology':>18}  {'onset':>5}  {'Delay_W ours':>12}  {'Delay_W ref':>11}")
    for pathology in ("data_permutation", "lr_spike", "collapse"):
        stream = record_stream(pathology, onset, inj_iters, 0, ours_c)
        d_ours = delay_of(replay(stream, ours_c, inj_iters), onset, k, w)
        d_ref = delay_of(replay(stream, ref_c, inj_iters), onset, k, w)
        print(f"{pathology:>18}  {onset:>5}  {_show(d_ours):>12}  {_show(d_ref):>11}")

    _overhead_section(opts.full)
    print(f"total {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
