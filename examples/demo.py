"""``make demo``: evaluate two edited subjects of a tiny model, offline, in about a minute on a CPU.

1. Builds (or reuses from the cache) a tiny GPT-2 trained for a few seconds on the shipped sample
   text, with :func:`invarlock_core.testing.tiny_model`.
2. Runs ``invarlock evaluate`` in a subprocess for each subject:
   * a clean edit, 8-bit round-to-nearest quantization of the FFN weights (expected PASS),
   * a stress edit, 50% magnitude pruning of every matrix: perplexity barely moves on these short
     windows, but the spectral guard sees the weights change against the baseline (expected FAIL),
   * a fault injection, one NaN weight in block 0 (expected FAIL, exit 1, with a reason).
   With the ``invarlock-edits`` plugin installed the subjects come from ``--edit``; without it the
   demo writes them itself with safetensors (an identical copy and a NaN-poisoned copy).
3. Re-checks both reports with ``invarlock verify`` and prints verdicts and report paths.

Exit status 0 when both verdicts are the expected ones and both reports verify.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
QUICK = ["--seq-len", "64", "--preview-windows", "4", "--final-windows", "24", "--profile", "dev"]


def invarlock(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invarlock_core.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        check=False,
    )


def has_edits() -> bool:
    from invarlock_core.plugins import get_registries

    edits = get_registries().edits
    return "quant_rtn" in edits and "nan_injection" in edits


def write_subject(baseline: Path, target: Path, *, poison: bool) -> Path:
    """Fallback without the edits plugin: an identical copy, or one with a NaN weight in block 0."""
    from safetensors.torch import load_file, save_file

    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(baseline, target)
    if poison:
        weights = target / "model.safetensors"
        tensors: dict[str, Any] = load_file(str(weights))
        name = next(n for n, t in sorted(tensors.items()) if t.ndim == 2 and ".h.0." in n)
        tensors[name] = tensors[name].clone()
        tensors[name][0, 0] = float("nan")
        save_file(tensors, str(weights), metadata={"format": "pt"})
    return target


def run_case(title: str, baseline: Path, out: Path, subject_args: list[str], expected: str) -> bool:
    result = invarlock("evaluate", "--baseline", baseline, *subject_args, "--out", out, *QUICK, "--json")
    if result.returncode not in (0, 1):
        print(f"  {title}: evaluate failed (exit {result.returncode}): {result.stderr.strip()}")
        return False
    summary = json.loads(result.stdout)
    ratio = "n/a" if summary["ratio"] is None else f"{summary['ratio']:.4f}"
    print(f"  {title}: {summary['verdict']} (exit {result.returncode}), perplexity ratio {ratio}")
    for reason in summary["reasons"]:
        print(f"      reason: {reason}")
    print(f"      report: {summary['report']}")
    verify = invarlock("verify", summary["report"])
    print(f"      invarlock verify: {'OK' if verify.returncode == 0 else 'FAILED'} (exit {verify.returncode})")
    return bool(summary["verdict"] == expected and verify.returncode == 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "demo-out", help="output directory (default demo-out/)")
    args = parser.parse_args()
    from invarlock_core.testing import tiny_model

    print("InvarLock demo: building (or reusing) a tiny GPT-2 trained offline on the shipped sample...")
    baseline = tiny_model("gpt2")
    print(f"  baseline: {baseline}")
    args.out.mkdir(parents=True, exist_ok=True)
    if has_edits():
        clean_title, clean = "clean edit (RTN 8-bit, FFN)", ["--edit", "quant_rtn:8:32:ffn"]
        fault = ["--edit", "nan_injection"]
    else:
        print("  (invarlock-edits is not installed: writing the subjects with safetensors)")
        clean_title = "noop subject (identical copy)"
        clean = ["--subject", str(write_subject(baseline, args.out / "clean-subject", poison=False))]
        fault = ["--subject", str(write_subject(baseline, args.out / "nan-subject", poison=True))]
    ok = run_case(clean_title, baseline, args.out / "clean", clean, "PASS")
    if has_edits():
        stress = ["--edit", "magnitude_prune:0.5:all"]
        ok = run_case("stress edit (50% pruning, all)", baseline, args.out / "stress", stress, "FAIL") and ok
    ok = run_case("fault injection (NaN weight)", baseline, args.out / "nan", fault, "FAIL") and ok
    print("demo " + ("finished: verdicts as expected" if ok else "FAILED: unexpected verdicts"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
