"""Benchmark the built-in edits: throughput vs a straightforward per-tensor loop, and peak memory.

Side by side in one run, on a randomly initialised LLaMA-shaped checkpoint built offline:

* kernel throughput (GB of edited weights per second) of our vectorized, chunked kernels vs the
  straightforward way to write each edit (RTN and FP8 with a Python loop over rows/groups,
  pruning with a full sort, low rank with a full SVD), on the same tensors;
* end-to-end throughput of ``invarlock edit apply`` (read, edit, compare, hash, write) in a fresh
  process, and its peak resident memory relative to the model's size, next to the peak of the
  straightforward pipeline (load the whole state dict, edit, ``save_file``).

Run: ``python benchmarks/bench_edits.py [--layers 4 --hidden 512] [--device cpu|cuda]``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from invarlock_edits.checkpoint import Checkpoint
from invarlock_edits.kernels import (
    fp8_round_trip,
    lowrank_approximation,
    magnitude_prune,
    rtn_quantize,
    tensor_generator,
)
from invarlock_edits.memory_probe import build_random_llama
from invarlock_edits.scopes import parse_scope

SPECS = {
    "quant_rtn": "quant_rtn:4:32:all",
    "fp8_quant": "fp8_quant:e5m2:all",
    "magnitude_prune": "magnitude_prune:0.5:all",
    "lowrank_svd": "lowrank_svd:32:all",
}
NAIVE_BUDGET_S = 0.3
REPEATS = 3


def naive_rtn(weights: torch.Tensor, bits: int = 4, group: int = 32) -> torch.Tensor:
    out = weights.clone()
    qmax = 2 ** (bits - 1) - 1
    for r in range(out.shape[0]):
        for start in range(0, out.shape[1], group):
            block = out[r, start : start + group]
            scale = max(float(block.abs().max()) / qmax, 1e-10)
            out[r, start : start + group] = (block / scale).round().clamp(-qmax, qmax) * scale
    return out


def naive_fp8(weights: torch.Tensor) -> torch.Tensor:
    out = weights.clone()
    fmax = torch.finfo(torch.float8_e5m2).max
    for r in range(out.shape[0]):
        out[r] = out[r].clamp(-fmax, fmax).to(torch.float8_e5m2).float()
    return out


def naive_prune(weights: torch.Tensor, level: float = 0.5) -> torch.Tensor:
    out = weights.clone().reshape(-1)
    order = out.abs().argsort()
    out[order[: round(level * out.numel())]] = 0
    return out.reshape(weights.shape)


def naive_lowrank(weights: torch.Tensor, rank: int = 32) -> torch.Tensor:
    u, s, vh = torch.linalg.svd(weights, full_matrices=False)
    result: torch.Tensor = (u[:, :rank] * s[:rank]) @ vh[:rank]
    return result


OURS: dict[str, Callable[[str, torch.Tensor], torch.Tensor]] = {
    "quant_rtn": lambda n, t: rtn_quantize(t, bits=4, group_size=32, inplace=True),
    "fp8_quant": lambda n, t: fp8_round_trip(t, fmt="e5m2", inplace=True),
    "magnitude_prune": lambda n, t: magnitude_prune(t, level=0.5, inplace=True),
    "lowrank_svd": lambda n, t: lowrank_approximation(
        t, rank=32, generator=tensor_generator(0, n), inplace=True
    ),
}
NAIVE: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "quant_rtn": naive_rtn,
    "fp8_quant": naive_fp8,
    "magnitude_prune": naive_prune,
    "lowrank_svd": naive_lowrank,
}
ROW_SLICED = {"quant_rtn", "fp8_quant"}  # naive cost is linear in rows: time a slice, scale up


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _run_all(fn: Callable[[torch.Tensor], torch.Tensor], tensors: list[torch.Tensor]) -> None:
    for tensor in tensors:
        fn(tensor)


def _best_seconds(run: Callable[[], object], device: str, repeats: int = REPEATS) -> float:
    """Minimum wall time of ``repeats`` runs: the least disturbed by other load on the machine."""
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        run()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def kernel_throughput(checkpoint: Checkpoint, device: str) -> dict[str, dict[str, float]]:
    """GB/s of our kernels over every in-scope tensor, and of the naive loops on a sample."""
    infos = parse_scope("all").select(checkpoint)
    tensors = {info.name: checkpoint.load(info.name).to(device) for info in infos}
    total_bytes = sum(t.numel() * t.element_size() for t in tensors.values())
    results: dict[str, dict[str, float]] = {}
    for edit, ours in OURS.items():

        def run_ours(ours: Callable[[str, torch.Tensor], torch.Tensor] = ours) -> None:
            for name, tensor in tensors.items():
                ours(name, tensor.clone())

        clone_s = _best_seconds(lambda: [t.clone() for t in tensors.values()], device)
        ours_s = max(_best_seconds(run_ours, device) - clone_s, 1e-9)
        naive = NAIVE[edit]
        samples: list[torch.Tensor] = []
        for tensor in tensors.values():  # as many tensors as fit in the naive time budget
            samples.append(tensor[: max(1, tensor.shape[0] // 8)] if edit in ROW_SLICED else tensor)
            once = _best_seconds(functools.partial(naive, samples[-1]), device, repeats=1)
            if once * len(samples) > NAIVE_BUDGET_S:
                break
        naive_s = _best_seconds(functools.partial(_run_all, naive, samples), device)
        naive_bytes = sum(s.numel() * s.element_size() for s in samples)
        results[edit] = {
            "ours_gbps": total_bytes / ours_s / 1e9,
            "naive_gbps": naive_bytes / naive_s / 1e9,
        }
    return results


def _probe(baseline: Path, spec: str, out: Path) -> dict[str, Any]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "invarlock_edits.memory_probe",
            "--baseline",
            str(baseline),
            "--edit",
            spec,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


_NAIVE_PIPELINE = """
import json, sys, time, torch
from safetensors.torch import load_file, save_file
from invarlock_edits.kernels import rtn_quantize
from invarlock_edits.memory_probe import peak_rss_bytes, rss_bytes
src, dst = sys.argv[1], sys.argv[2]
before = rss_bytes()
start = time.perf_counter()
state = load_file(src)
edited = {k: (rtn_quantize(v, bits=4, group_size=32) if v.ndim == 2 else v.clone()) for k, v in state.items()}
save_file(edited, dst, metadata={"format": "pt"})
print(json.dumps({"rss_before_bytes": before, "peak_rss_bytes": peak_rss_bytes(), "seconds": time.perf_counter() - start}))
"""


def naive_pipeline(baseline: Path, out: Path) -> dict[str, Any]:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _NAIVE_PIPELINE,
            str(baseline / "model.safetensors"),
            str(out / "model.safetensors"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--intermediate", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=6000)
    parser.add_argument(
        "--device", default="cpu", help="device for the kernel comparison (cpu, cuda)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads for every measurement (default 1: stable on a shared machine)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # for the measured subprocesses
    with tempfile.TemporaryDirectory(prefix="bench-edits-") as tmp:
        root = Path(tmp)
        baseline = build_random_llama(
            root / "baseline",
            hidden=args.hidden,
            intermediate=args.intermediate,
            layers=args.layers,
            vocab=args.vocab,
        )
        checkpoint = Checkpoint.open(baseline)
        size = checkpoint.total_bytes
        print(
            f"model: LLaMA-shaped, {args.layers} layers, hidden {args.hidden}, {size / 1e6:.0f} MB float32; "
            f"torch threads {torch.get_num_threads()}, kernel device {args.device}"
        )
        kernels = kernel_throughput(checkpoint, args.device)
        print(
            f"{'edit':<18}{'ours GB/s':>11}{'naive GB/s':>12}{'speedup':>9}{'e2e GB/s':>10}{'peak RSS/model':>16}{'(+RSS)/model':>14}"
        )
        for edit, spec in SPECS.items():
            probe = _probe(baseline, spec, root / f"out-{edit}")
            k = kernels[edit]
            print(
                f"{edit:<18}{k['ours_gbps']:>11.3f}{k['naive_gbps']:>12.4f}{k['ours_gbps'] / k['naive_gbps']:>8.1f}x"
                f"{size / probe['seconds'] / 1e9:>10.3f}{probe['peak_rss_bytes'] / size:>16.2f}"
                f"{(probe['peak_rss_bytes'] - probe['rss_before_bytes']) / size:>14.2f}"
            )
        (root / "naive").mkdir()
        naive = naive_pipeline(baseline, root / "naive")
        print(
            f"{'naive pipeline':<18}{'':>11}{'':>12}{'':>9}{size / naive['seconds'] / 1e9:>10.3f}"
            f"{naive['peak_rss_bytes'] / size:>16.2f}{(naive['peak_rss_bytes'] - naive['rss_before_bytes']) / size:>14.2f}"
            "   (load_file + RTN + save_file)"
        )
        print(
            "peak RSS/model counts the interpreter and torch (~250 MB); (+RSS)/model is the edit's own growth."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
