"""Measure one edit's peak resident memory in a fresh process.

``python -m invarlock_edits.memory_probe --baseline DIR --edit SPEC --out DIR`` applies the edit
and prints one JSON object: the checkpoint's weight bytes, the process's resident memory just
before the edit (interpreter, torch and plugins loaded), its peak resident memory (``VmHWM`` from
``/proc/self/status``, falling back to ``ru_maxrss``) and the edit's wall time. The benchmark and
the memory test use it so that the figure is a real process's, not an estimate.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

__all__ = ["build_random_llama", "main", "peak_rss_bytes", "rss_bytes"]


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:  # pragma: no cover - not Linux
        return None
    return None  # pragma: no cover


def rss_bytes() -> int:
    """Current resident set size of this process."""
    kib = _status_kib("VmRSS")
    return (kib if kib is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far."""
    kib = _status_kib("VmHWM")
    return (kib if kib is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def build_random_llama(
    out: Path,
    *,
    hidden: int,
    intermediate: int,
    layers: int,
    vocab: int,
    seed: int = 0,
) -> Path:
    """Save a randomly initialised ``LlamaForCausalLM`` of the given shape (no tokenizer) to ``out``.

    Big enough for memory and throughput figures to mean something, built offline in seconds.
    """
    import torch
    import transformers

    config = transformers.LlamaConfig(
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        num_key_value_heads=max(1, hidden // 128),
        vocab_size=vocab,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config)
    model.save_pretrained(str(out))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m invarlock_edits.memory_probe")
    parser.add_argument("--baseline", required=True, type=Path)
    parser.add_argument("--edit", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch  # noqa: F401  (loaded before the baseline RSS is taken, as in any real run)

    from invarlock_core.editing import EditSpec
    from invarlock_core.plugins import get_registries
    from invarlock_edits.checkpoint import Checkpoint
    from invarlock_edits.edit_command import apply_edit

    spec = EditSpec.parse(args.edit)
    edit = get_registries().edits.get(spec.name)
    model_bytes = Checkpoint.open(args.baseline).total_bytes
    before = rss_bytes()
    start = time.perf_counter()
    metadata = apply_edit(
        edit, spec, baseline=args.baseline, out=args.out, seed=args.seed, overwrite=True
    )
    seconds = time.perf_counter() - start
    peak = peak_rss_bytes()
    edited = sum(
        entry["elements"] for entry in metadata["coverage"]["tensors"].values()
    )  # elements of declared tensors
    json.dump(
        {
            "edit": args.edit,
            "model_bytes": model_bytes,
            "rss_before_bytes": before,
            "peak_rss_bytes": peak,
            "seconds": seconds,
            "declared_elements": edited,
            "tensors_changed": metadata["coverage"]["tensors_changed"],
        },
        sys.stdout,
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
