"""``python -m veriscope_gate.runners.gpt``: the built-in small GPT trainer with the gate wired in.

``veriscope run gpt --gate-preset P --outdir D -- --max_iters 2000 --device cpu`` launches this
module. On SIGINT/SIGTERM it stops at the next iteration and writes a partial capsule.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from invarlock_core.cli.arg_types import positive_int
from veriscope_gate.runners.common import (
    StopFlag,
    add_gate_arguments,
    add_model_arguments,
    exit_for_signal,
    fail_line,
    format_gate,
    parse_overrides,
    run_main,
)
from veriscope_gate.tinygpt import PATHOLOGIES, GPTConfig, train_gpt

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="veriscope-runner-gpt",
                                     description="Train the built-in tiny GPT under the Veriscope gate.")
    add_gate_arguments(parser)
    parser.add_argument("--max_iters", "--max-iters", dest="max_iters", type=positive_int, default=2000)
    add_model_arguments(parser)
    parser.add_argument("--n_head", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--pathology", choices=PATHOLOGIES, default="none")
    parser.add_argument("--onset", type=int, default=None, help="iteration the pathology starts")
    parser.add_argument("--spike_factor", type=float, default=30.0)
    parser.add_argument("--log_interval", type=int, default=100)
    parser.add_argument("--fail-at", type=int, default=None,
                        help="raise an exception at this iteration (tests the crash path)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), _run, argv)


def _run(args: argparse.Namespace, stop: StopFlag) -> int:
    from veriscope_gate.probe import LayerProbe
    from veriscope_gate.session import GateSession

    if args.pathology != "none" and args.onset is None:
        return fail_line("--pathology needs --onset ITER")
    cfg = GPTConfig(
        max_iters=args.max_iters, device=args.device, seed=args.seed, batch_size=args.batch_size,
        block_size=args.block_size, n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
        lr=args.lr, pathology=args.pathology, onset=args.onset, spike_factor=args.spike_factor,
        threads=args.threads,
    )
    pathology = ({"kind": args.pathology, "onset_iter": args.onset}
                 if args.pathology != "none" else None)
    probe_info = {"layer": f"blocks.{args.n_layer - 1}", "sketch_dim": 64, "max_tokens": 1024,
                  "jl_seed": args.seed}
    session = GateSession(
        args.outdir, gate_preset=args.gate_preset, overrides=parse_overrides(args.override) or None,
        run_id=args.run_id, runner={"kind": "gpt", "model": "tinygpt-char",
                                    "n_layer": args.n_layer, "n_embd": args.n_embd},
        probe=probe_info, pathology=pathology,
    )
    metrics = _metrics()
    print(f"veriscope-runner: started run_id={session.run_id} preset={args.gate_preset} "
          f"max_iters={args.max_iters} device={args.device}", flush=True)

    probes: list[LayerProbe] = []

    def make_probe(block: Any, hidden: int, device: str) -> LayerProbe:
        probes.append(LayerProbe(block, metrics, hidden_size=hidden, seed=args.seed, device=device))
        return probes[-1]

    def on_probe(it: int, values: dict[str, float], loss: float) -> None:
        session.record(it, values, loss)
        if args.fail_at is not None and it >= args.fail_at:
            raise RuntimeError(f"injected runner failure at iteration {it}")

    def on_gate(it: int) -> bool:
        record = session.evaluate(it)
        print(format_gate(record), flush=True)
        return bool(args.stop_on_fail and record.decision == "fail")

    try:
        outcome = train_gpt(
            cfg, on_probe=on_probe, on_gate=on_gate, make_probe=make_probe,
            metric_interval=session.controls.metric_interval,
            gate_window=session.controls.gate_window, should_stop=stop,
            log=lambda line: print(f"veriscope-runner: {line}", flush=True),
            log_interval=args.log_interval,
        )
    except Exception:
        session.add_gate_time(sum(p.elapsed_s for p in probes))
        session.close(partial=True, run_status="user_code_failure", runner_exit_code=1)
        raise
    session.add_gate_time(sum(p.elapsed_s for p in probes))
    summary = session.close(partial=outcome.interrupted, runner_signal=stop.signal_name,
                            runner_wall_s=outcome.wall_s)
    print(f"veriscope-runner: finished iters={outcome.iters_done} final_decision="
          f"{summary.final_decision} counts={summary.counts}", flush=True)
    return exit_for_signal(stop) if outcome.interrupted else 0


def _metrics() -> list[Any]:
    from veriscope_gate.plugins import get_metric_registry

    return [reg.item for reg in get_metric_registry()]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
