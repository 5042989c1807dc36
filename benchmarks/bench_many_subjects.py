"""Many subjects, one baseline: ``evaluate_many`` against separate evaluations.

Builds the default bench model of ``bench_evaluate.py`` (GPT-2 6x512) and N (default 4) noisy
copies, then measures in one process, best of ``--repeats`` interleaved runs:

* ``many``: :func:`invarlock_core.evaluation.evaluate_many` (``invarlock evaluate --subject`` given
  N times): the baseline is loaded, scored and measured once;
* ``separate``: N calls of :func:`invarlock_core.evaluation.evaluate`, one per subject;
* ``bare``: 1 + N plain forward passes (baseline and every subject, models loaded beforehand)
  over the same windows: the floor any paired evaluation of N subjects must pay.

Prints ``many / separate`` and ``many / bare`` (target <= 1.15), wall and process CPU time. No
guards run (this measures the evaluation's own cost). Timings are only meaningful on a quiet
machine; imports are warmed up first.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_evaluate import add_model_arguments, bare_forwards, build_models, perturbed_copy


def main() -> int:
    parser = argparse.ArgumentParser(description="evaluate_many vs N evaluates vs 1 + N bare forward passes")
    parser.add_argument("--subjects", type=int, default=4)
    add_model_arguments(parser)
    args = parser.parse_args()

    import torch

    from invarlock_core.evaluation import EvaluationRequest, evaluate, evaluate_many

    root = Path(tempfile.mkdtemp(prefix="bench-many-"))
    try:
        base, first = build_models(root, layers=args.layers, width=args.width)
        subjects = [first] + [perturbed_copy(base, root / f"subject{i}", seed=i + 2) for i in range(1, args.subjects)]

        def request(out: Path, subject: Path | None = None) -> EvaluationRequest:
            return EvaluationRequest(
                baseline=base, subject=subject, out=out, device="cpu", seq_len=args.seq_len,
                final_windows=args.final_windows, preview_windows=args.preview_windows,
                batch_size=args.batch, guards=(),
            )  # fmt: skip

        def many(name: str) -> tuple[float, float, dict[str, Any]]:
            wall, cpu = time.perf_counter(), time.process_time()
            outcome = evaluate_many(request(root / name), subjects)
            return time.perf_counter() - wall, time.process_time() - cpu, outcome.outcomes[0].report

        def separate(name: str) -> tuple[float, float]:
            wall, cpu = time.perf_counter(), time.process_time()
            for i, subject in enumerate(subjects):
                evaluate(request(root / name / str(i), subject))
            return time.perf_counter() - wall, time.process_time() - cpu

        many("warmup")
        runs: dict[str, list[tuple[float, float]]] = {"many": [], "separate": [], "bare": []}
        for i in range(args.repeats):  # interleaved, best of N: the machine may be shared
            wall, cpu, report = many(f"many{i}")
            runs["many"].append((wall, cpu))
            runs["separate"].append(separate(f"separate{i}"))
            runs["bare"].append(bare_forwards((base, *subjects), report, args.batch))
        best = {name: (min(r[0] for r in found), min(r[1] for r in found)) for name, found in runs.items()}
        windows = args.final_windows + args.preview_windows
        n = len(subjects)
        print(
            f"model: GPT-2 {args.layers}x{args.width}, {n} subjects, {windows} windows x {args.seq_len} tokens, "
            f"batch {args.batch}, CPU threads {torch.get_num_threads()}, best of {args.repeats}"
        )
        print(f"bare forward passes (1 + {n} models)  wall {best['bare'][0]:8.3f} s   cpu {best['bare'][1]:8.3f} s")
        print(f"{n} separate evaluates              wall {best['separate'][0]:8.3f} s   cpu {best['separate'][1]:8.3f} s")
        print(f"evaluate_many ({n} subjects)         wall {best['many'][0]:8.3f} s   cpu {best['many'][1]:8.3f} s")
        for label, other in (("many / separate", "separate"), ("many / bare", "bare")):
            print(
                f"{label:<36} wall {best['many'][0] / best[other][0]:8.3f}     "
                f"cpu {best['many'][1] / best[other][1]:8.3f}" + ("   (target <= 1.15)" if other == "bare" else "")
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
