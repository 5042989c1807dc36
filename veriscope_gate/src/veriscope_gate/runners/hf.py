"""``python -m veriscope_gate.runners.hf``: a Hugging Face ``Trainer`` run gated by VeriscopeCallback.

The model is a small GPT-2 built offline from a config (no downloads) over a character vocabulary
of the shipped English sample. ``veriscope run hf`` launches this module (or the command in
``VERISCOPE_HF_RUNNER_CMD``). SIGINT/SIGTERM stop training at the next step and write a partial
capsule.
"""

from __future__ import annotations

import argparse
import sys
import time
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

__all__ = ["build_parser", "build_tiny_gpt2", "char_dataset", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="veriscope-runner-hf",
                                     description="HF Trainer run of a tiny GPT-2 under VeriscopeCallback.")
    add_gate_arguments(parser)
    parser.add_argument("--max_steps", "--max_iters", dest="max_steps", type=positive_int, default=600)
    add_model_arguments(parser)
    parser.add_argument("--pathology", choices=("none", "data_permutation"), default="none")
    parser.add_argument("--onset", type=int, default=None)
    return parser


def char_dataset(block_size: int, seed: int = 0) -> tuple[Any, int]:
    """A map-style dataset of ``block_size`` character windows of the shipped text; vocab size."""
    import torch

    from veriscope_gate.tinygpt import load_corpus

    text = load_corpus()
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)

    class CharWindows(torch.utils.data.Dataset[dict[str, Any]]):
        permutation: Any = None

        def __len__(self) -> int:
            return int(data.numel() // block_size) - 1

        def __getitem__(self, i: int) -> dict[str, Any]:
            x = data[i * block_size : (i + 1) * block_size]
            if self.permutation is not None:
                x = self.permutation[x]
            return {"input_ids": x, "labels": x.clone()}

    ds = CharWindows()
    ds.permutation = None
    _ = seed
    return ds, len(chars)


def build_tiny_gpt2(vocab_size: int, *, block_size: int = 64, n_layer: int = 2, n_embd: int = 64,
                    seed: int = 0) -> Any:
    """A randomly initialised GPT-2 LM built from a config (offline)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab_size, n_positions=block_size, n_embd=n_embd,
                        n_layer=n_layer, n_head=2, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(config)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), _run, argv)


def _run(args: argparse.Namespace, stop: StopFlag) -> int:
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from veriscope_gate.callback import VeriscopeCallback

    if args.pathology != "none" and args.onset is None:
        return fail_line("--pathology needs --onset ITER")
    if args.device == "cpu":
        torch.set_num_threads(1)
    ds, vocab = char_dataset(args.block_size, args.seed)
    model = build_tiny_gpt2(vocab, block_size=args.block_size, n_layer=args.n_layer,
                            n_embd=args.n_embd, seed=args.seed)
    gate = VeriscopeCallback(args.outdir, gate_preset=args.gate_preset,
                             overrides=parse_overrides(args.override) or None,
                             stop_on_fail=args.stop_on_fail, run_id=args.run_id, seed=args.seed,
                             close_on_train_end=False)
    pathology, onset = args.pathology, args.onset
    perm = torch.randperm(vocab, generator=torch.Generator().manual_seed(args.seed + 1))

    class Control(TrainerCallback):
        """Signal polling, pathology onset and live gate lines."""

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if pathology == "data_permutation" and state.global_step + 1 >= onset:
                ds.permutation = perm
            return control

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if gate.last_record is not None and gate.last_record.iter == state.global_step:
                print(format_gate(gate.last_record), flush=True)
            if stop():
                control.should_training_stop = True
            return control

    targs = TrainingArguments(
        output_dir=f"{args.outdir}/hf_trainer", max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size, learning_rate=args.lr, lr_scheduler_type="constant",
        logging_steps=max(1, args.max_steps // 5), save_strategy="no", report_to=[],
        use_cpu=args.device == "cpu", dataloader_num_workers=0, disable_tqdm=True, seed=args.seed,
    )
    trainer = Trainer(model=model, args=targs, train_dataset=ds, callbacks=[gate, Control()])
    print(f"veriscope-runner: started hf run preset={args.gate_preset} max_steps={args.max_steps}",
          flush=True)
    t0 = time.perf_counter()
    try:
        trainer.train()
    except Exception:
        gate.finalize(partial=True)
        raise
    interrupted = stop()
    gate.finalize(partial=interrupted, runner_signal=stop.signal_name)
    print(f"veriscope-runner: finished in {time.perf_counter() - t0:.1f} s", flush=True)
    return exit_for_signal(stop) if interrupted else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
