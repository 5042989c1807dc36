"""``invarlock evaluate``: a thin CLI over :func:`invarlock_core.evaluation.evaluate`.

Exit codes: 0 PASS, 1 FAIL (a gate failed), 2 invalid input or usage, 3 internal error.
``--subject`` may be given several times: the baseline is measured once and each subject's report
goes to ``DIR/<subject directory name>/``; the exit code is the worst verdict's.
Flags left out fall back to the documented environment variables (``INVARLOCK_TIER``,
``INVARLOCK_SEQ_LEN``, ``INVARLOCK_STRIDE``, ``INVARLOCK_PREVIEW_WINDOWS``,
``INVARLOCK_FINAL_WINDOWS``, ``INVARLOCK_EVAL_BATCH``, ``INVARLOCK_ALLOW_NETWORK``,
``INVARLOCK_ALLOW_REMOTE_CODE``) and then to the profile.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from invarlock_core.cli.arg_types import non_negative_int
from invarlock_core.cli.output import print_json
from invarlock_core.errors import EvaluationError, UsageError

if TYPE_CHECKING:
    from invarlock_core.evaluation import EvaluationOutcome, EvaluationRequest
    from invarlock_core.report.sections import EvaluationReport

__all__ = ["register"]

_INT_ENV = {
    "seq_len": "INVARLOCK_SEQ_LEN",
    "stride": "INVARLOCK_STRIDE",
    "preview_windows": "INVARLOCK_PREVIEW_WINDOWS",
    "final_windows": "INVARLOCK_FINAL_WINDOWS",
    "batch_size": "INVARLOCK_EVAL_BATCH",
}
_TRUE = {"1", "true", "yes", "on"}



def _band(text: str) -> tuple[float, float]:
    parts = text.split(",")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI (two numbers), got {text!r}") from None
    if not 0 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"expected 0 <= LO <= HI, got {text!r}")
    return lo, hi


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="compare a subject checkpoint with its baseline and write an evaluation report",
        description="Score baseline and subject on identical windows, run the guard chain and "
        "write DIR/evaluation.report.json. Exit 0 PASS, 1 FAIL, 2 invalid input, 3 internal error.",
    )
    p.add_argument("--baseline", required=True, metavar="DIR", help="baseline checkpoint directory")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--subject",
        metavar="DIR",
        action="append",
        help="subject checkpoint directory; repeat it to compare several subjects with one baseline",
    )
    which.add_argument("--edit", metavar="SPEC", help="create the subject with an edit plugin (NAME[:ARG...])")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory for the report")
    p.add_argument(
        "--keep-subject",
        action="store_true",
        help="with --edit: keep the edited checkpoint in DIR/subject (removed after the evaluation otherwise)",
    )
    data = p.add_argument_group("dataset")
    data.add_argument("--dataset", metavar="NAME", help="dataset provider (default: INVARLOCK_DATASET or sample)")
    data.add_argument("--data-path", metavar="PATH", help="local_jsonl: file, directory or glob")
    data.add_argument("--text-field", metavar="FIELD", help="field holding the text (default text)")
    data.add_argument("--max-samples", type=non_negative_int, metavar="N", help="use at most N texts")
    data.add_argument("--dataset-name", metavar="NAME", help="hf_text: Hugging Face dataset id")
    data.add_argument("--dataset-config", metavar="NAME", help="hf_text: dataset configuration")
    data.add_argument("--split", metavar="SPLIT", help="hf_text/wikitext2 split (default validation)")
    win = p.add_argument_group("windows")
    win.add_argument("--seq-len", type=non_negative_int, metavar="N", help="tokens per window")
    win.add_argument("--stride", type=non_negative_int, metavar="N", help="candidate window spacing (default seq-len)")
    win.add_argument("--preview-windows", type=non_negative_int, metavar="N", help="windows for the drift check")
    win.add_argument("--final-windows", type=non_negative_int, metavar="N", help="windows for the primary metric")
    win.add_argument("--batch-size", type=non_negative_int, metavar="N", help="windows per forward pass")
    win.add_argument("--seed", type=int, default=0, help="window selection and bootstrap seed (default 0)")
    gate = p.add_argument_group("gates")
    gate.add_argument("--tier", choices=("balanced", "conservative", "aggressive"), help="acceptance tier (default balanced)")
    gate.add_argument("--profile", choices=("dev", "ci", "release"), default="dev", help="evidence profile (default dev)")
    gate.add_argument("--preset", metavar="FILE", help="preset TOML/JSON (tier, gates, guard chain)")
    gate.add_argument("--guards", metavar="LIST", help="comma-separated guard chain, or 'none'")
    gate.add_argument("--acceptance-range", type=_band, metavar="LO,HI", help="explicit ratio acceptance range")
    gate.add_argument("--drift-band", type=_band, metavar="LO,HI", help="explicit final/preview drift band")
    gate.add_argument("--bootstrap-replicates", type=non_negative_int, metavar="N", help="BCa bootstrap replicates")
    gate.add_argument("--alpha", type=float, metavar="A", help="CI level is 1 - A (default 0.05)")
    gate.add_argument("--baseline-report", metavar="FILE", help="reuse the baseline numbers of an earlier report")
    gate.add_argument("--assurance", choices=("gate", "off"), default="gate",
                      help="off: load-path check, exit 0 whenever the report is written")
    run = p.add_argument_group("runtime")
    run.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    run.add_argument("--dtype", default="auto", help="auto, float32, float16 or bfloat16")
    run.add_argument("--net", action="store_true", help="allow network downloads (models, datasets)")
    run.add_argument("--trust-remote-code", action="store_true", help="allow custom model code")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.set_defaults(handler=_run)


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not an integer") from None
    if value < 0:
        raise UsageError(f"{name}={raw!r} must not be negative")
    return value


def _guards(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    if text.strip().lower() == "none":
        return ()
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise UsageError("--guards needs a comma-separated list of guard names, or 'none'")
    return names


def _request(args: argparse.Namespace, subject: str | None) -> EvaluationRequest:
    from invarlock_core.evaluation import EvaluationRequest

    ints: dict[str, int | None] = {
        key: getattr(args, key) if getattr(args, key) is not None else _env_int(env) for key, env in _INT_ENV.items()
    }
    return EvaluationRequest(
        baseline=args.baseline,
        subject=subject,
        edit=args.edit,
        out=args.out,
        dataset=args.dataset,
        data_path=args.data_path,
        text_field=args.text_field,
        max_samples=args.max_samples,
        dataset_name=args.dataset_name,
        dataset_config=args.dataset_config,
        split=args.split,
        seq_len=ints["seq_len"],
        stride=ints["stride"],
        preview_windows=ints["preview_windows"],
        final_windows=ints["final_windows"],
        batch_size=ints["batch_size"],
        tier=args.tier or os.environ.get("INVARLOCK_TIER") or None,
        profile=args.profile,
        device=args.device,
        dtype=args.dtype,
        preset=args.preset,
        guards=_guards(args.guards),
        seed=args.seed,
        allow_network=args.net or os.environ.get("INVARLOCK_ALLOW_NETWORK", "").lower() in _TRUE,
        trust_remote_code=args.trust_remote_code
        or os.environ.get("INVARLOCK_ALLOW_REMOTE_CODE", "").lower() in _TRUE,
        bootstrap_replicates=args.bootstrap_replicates,
        alpha=args.alpha,
        acceptance_range=args.acceptance_range,
        drift_band=args.drift_band,
        baseline_report=args.baseline_report,
        assurance=args.assurance,
        keep_subject=args.keep_subject,
    )


def _typed(outcome: EvaluationOutcome) -> EvaluationReport:
    if outcome.sections is None:  # pragma: no cover - evaluate always returns the typed report
        raise EvaluationError("evaluate returned no typed report")
    return outcome.sections


def _summary(outcome: EvaluationOutcome) -> dict[str, Any]:
    report = _typed(outcome)
    pm = report.primary_metric
    return {
        "verdict": outcome.verdict,
        "exit_code": outcome.exit_code,
        "report": str(outcome.report_path),
        "markdown": str(outcome.markdown_path),
        "ratio": pm.ratio,
        "ci": None if pm.ci is None else list(pm.ci),
        "reasons": list(report.reasons),
        "warnings": list(report.warnings),
    }


def _print(outcome: EvaluationOutcome) -> None:
    report = _typed(outcome)
    pm, policy = report.primary_metric, report.policy
    ratio = "n/a" if pm.ratio is None else f"{pm.ratio:.4f}"
    ci = "n/a" if pm.ci is None else f"[{pm.ci[0]:.4f}, {pm.ci[1]:.4f}]"
    print(f"{outcome.verdict}  ratio {ratio}  CI {ci}  ({policy['tier']}, {policy['profile']})")
    for reason in report.reasons:
        print(f"  reason: {reason}")
    for warning in report.warnings:
        print(f"  warning: {warning}")
    print(f"report: {outcome.report_path}")


def _run(args: argparse.Namespace) -> int:
    from invarlock_core.evaluation import evaluate
    from invarlock_core.evaluation.run import evaluate_many

    subjects: list[str] = args.subject or []
    if len(subjects) <= 1:
        outcome = evaluate(_request(args, subjects[0] if subjects else None))
        if args.json:
            print_json(_summary(outcome))
        else:
            _print(outcome)
        return outcome.exit_code
    many = evaluate_many(_request(args, None), subjects)
    if args.json:
        print_json({"exit_code": many.exit_code, "subjects": [_summary(o) for o in many.outcomes]})
        return many.exit_code
    for outcome in many.outcomes:
        _print(outcome)
    return many.exit_code
