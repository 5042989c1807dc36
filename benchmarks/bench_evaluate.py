"""Overhead of ``evaluate`` over the forward passes it cannot avoid.

Builds a small GPT-2 (6 layers, width 512, the tiny test tokenizer) and an edited copy, then
measures side by side in one process:

* ``bare``: two plain forward passes (baseline and subject) over the evaluation's windows, with
  the models already loaded: the floor any paired evaluation must pay;
* ``evaluate``: :func:`invarlock_core.evaluation.evaluate` end to end with no guards (load both
  checkpoints, hash them, tokenize and plan windows, score, bootstrap, write the report);
* ``evaluate+guards`` (``--guards``): the same with every installed guard plugin (informational).

Prints ``evaluate / bare`` in wall time and in process CPU time (target <= 1.15 on CPU), best of
``--repeats`` interleaved runs because CI machines are shared. Imports are warmed up first: interpreter start
and ``import transformers`` are not evaluation work. Default run: well under a minute.

Evaluate's fixed costs (loading and hashing two checkpoints, planning windows, the bootstrap,
writing the report) are about 0.25 s, so on a toy-sized model whose forward passes take 0.6 s the
ratio is ~1.45 (``--layers 4 --width 256``); from this default size on, the forward passes dominate.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def build_models(root: Path, *, layers: int, width: int) -> tuple[Path, Path]:
    import torch
    import transformers

    from invarlock_core.testing import VOCAB_SIZE, build_tokenizer

    base = root / "baseline"
    base.mkdir()
    build_tokenizer(base)
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=VOCAB_SIZE, n_positions=512, n_embd=width, n_layer=layers, n_head=4,
        bos_token_id=0, eos_token_id=0,
    )
    transformers.GPT2LMHeadModel(config).save_pretrained(str(base), safe_serialization=True)
    subject = perturbed_copy(base, root / "subject", seed=1)
    return base, subject


def perturbed_copy(base: Path, target: Path, *, seed: int) -> Path:
    """A copy of checkpoint ``base`` with 1% Gaussian noise on every matrix (seeded)."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(base, target)
    weights = target / "model.safetensors"
    generator = torch.Generator().manual_seed(seed)
    tensors = load_file(str(weights))
    edited = {
        k: v + 0.01 * v.std() * torch.randn(v.shape, generator=generator) if v.ndim == 2 else v
        for k, v in tensors.items()
    }
    save_file(edited, str(weights), metadata={"format": "pt"})
    return target


def bare_forwards(paths: Sequence[Path], report: dict[str, Any], batch: int) -> tuple[float, float]:
    """Wall and CPU seconds of plain forward passes of every checkpoint in ``paths`` (loaded
    beforehand) over exactly the report's windows."""
    import numpy as np
    import torch

    from invarlock_core.datasets.provider import DatasetOptions
    from invarlock_core.datasets.sample import SampleProvider
    from invarlock_core.evaluation.scoring import batches
    from invarlock_core.evaluation.windows import tokenize_stream
    from invarlock_core.models import load_model

    loaded = [load_model(p, device="cpu") for p in paths]
    stream = tokenize_stream(loaded[0].tokenizer, SampleProvider().load(DatasetOptions()).texts)
    seq = report["windows"]["seq_len"]
    starts = [w["start"] for group in ("preview", "final") for w in report["windows"][group]]
    ids = np.stack([stream[s : s + seq] for s in starts])
    blocks = [torch.from_numpy(np.ascontiguousarray(b)) for b in batches(ids, batch)]
    wall, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        for item in loaded:
            for block in blocks:
                item.model(input_ids=block, use_cache=False)
    return time.perf_counter() - wall, time.process_time() - cpu


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model, window and repeat options this benchmark shares with bench_many_subjects."""
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--final-windows", type=int, default=24)
    parser.add_argument("--preview-windows", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)


def main() -> int:
    parser = argparse.ArgumentParser(description="evaluate overhead vs two bare forward passes")
    add_model_arguments(parser)
    parser.add_argument("--guards", action="store_true", help="also time the installed guard chain")
    args = parser.parse_args()

    import torch

    from invarlock_core.evaluation import EvaluationRequest, evaluate

    root = Path(tempfile.mkdtemp(prefix="bench-evaluate-"))
    try:
        base, subject = build_models(root, layers=args.layers, width=args.width)

        def run(name: str, guards: tuple[str, ...] | None) -> tuple[float, float, dict[str, Any]]:
            request = EvaluationRequest(
                baseline=base, subject=subject, out=root / name, device="cpu",
                seq_len=args.seq_len, final_windows=args.final_windows,
                preview_windows=args.preview_windows, batch_size=args.batch, guards=guards,
            )
            wall, cpu = time.perf_counter(), time.process_time()
            outcome = evaluate(request)
            return time.perf_counter() - wall, time.process_time() - cpu, outcome.report

        run("warmup", ())  # imports, allocator, first-call costs
        ours: list[tuple[float, float]] = []
        bare: list[tuple[float, float]] = []
        report: dict[str, Any] = {}
        for i in range(args.repeats):  # interleaved, best of N: the machine may be shared
            wall, cpu, report = run(f"plain{i}", ())
            ours.append((wall, cpu))
            bare.append(bare_forwards((base, subject), report, args.batch))
        windows = args.final_windows + args.preview_windows
        print(
            f"model: GPT-2 {args.layers}x{args.width}, {windows} windows x {args.seq_len} tokens, "
            f"batch {args.batch}, CPU threads {torch.get_num_threads()}, best of {args.repeats}"
        )
        bare_wall, bare_cpu = min(b[0] for b in bare), min(b[1] for b in bare)
        our_wall, our_cpu = min(o[0] for o in ours), min(o[1] for o in ours)
        print(f"bare forward passes (2 models)  wall {bare_wall:8.3f} s   cpu {bare_cpu:8.3f} s")
        print(f"evaluate (no guards)            wall {our_wall:8.3f} s   cpu {our_cpu:8.3f} s")
        print(f"evaluate / bare                 wall {our_wall / bare_wall:8.3f}     cpu {our_cpu / bare_cpu:8.3f}   (target <= 1.15)")
        timings = report["timings"]
        print(
            "last evaluate: load {:.3f}+{:.3f} s, score {:.3f}+{:.3f} s, windows {:.3f} s, "
            "statistics {:.3f} s, total {:.3f} s".format(
                timings["baseline"]["load_s"], timings["subject"]["load_s"],
                timings["baseline"]["eval_s"], timings["subject"]["eval_s"],
                timings["windows_s"], timings["statistics_s"], timings["total_s"],
            )
        )
        if args.guards:
            wall, _, guarded = run("guards", None)
            names = ",".join(g["name"] for g in guarded["guards"]) or "none installed"
            print(f"evaluate + guards ({names}): wall {wall:.3f} s = {wall / bare_wall:.3f} x bare")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
