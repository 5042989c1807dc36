"""The ``veriscope`` command line: ``run``, ``validate``, ``report``, ``override``, ``calibrate``,
``diff``, plus ``presets`` and ``metrics`` listings.

Expected failures print ``error: <message>`` on one line and exit with a stable code (2 invalid
input / validation failed / incompatible runs, 3 internal). Anything else is a bug: traceback,
exit 3.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from invarlock_core.cli import run_handled
from veriscope_gate.errors import (
    EXIT_INVALID,
    EXIT_OK,
    ValidationFailed,
    VeriscopeError,
    VeriscopeUsageError,
)

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise VeriscopeUsageError(f"{self.prog}: {message}")


def _cmd_run(args: argparse.Namespace) -> int:
    from veriscope_gate.wrapper import run_wrapped

    return run_wrapped(args.runner, gate_preset=args.gate_preset, outdir=Path(args.outdir),
                       force=args.force, runner_args=args.runner_args,
                       veriscope_argv=["veriscope", *args.argv])


def _cmd_validate(args: argparse.Namespace) -> int:
    from veriscope_gate.validate import validate_capsule

    report = validate_capsule(
        args.outdir, strict_governance=args.strict_governance,
        require_governance=args.require_governance, strict_identity=args.strict_identity,
        allow_legacy_governance=args.allow_legacy_governance, allow_legacy=args.allow_legacy,
    )
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps({"outdir": report.outdir, "valid": report.ok, "partial": report.partial,
                          "governance": report.governance, "problems": report.problems,
                          "warnings": report.warnings},
                         indent=2, sort_keys=True))
    if not report.ok:
        if not args.json:
            for problem in report.problems:
                print(f"invalid: {problem}", file=sys.stderr)
        raise ValidationFailed(report.problems)
    if not args.json:
        kind = "partial capsule" if report.partial else "capsule"
        print(f"valid: {report.outdir} ({kind}; governance {report.governance})")
    return EXIT_OK


def _check_output(path: str | Path, *, directory: bool = False) -> None:
    """Refuse an output that is a special file or cannot be written, before any work."""
    from invarlock_core.output_checks import output_problem

    problem = output_problem(path, directory=directory)
    if problem:
        raise VeriscopeUsageError(problem)


def _write_output(path: str | Path, text: str) -> None:
    from invarlock_core.atomic import atomic_write_text

    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise VeriscopeUsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def _emit(text: str, output: str | None) -> None:
    if output:
        _write_output(output, text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _cmd_report(args: argparse.Namespace) -> int:
    from veriscope_gate.report import compare_report, render_report

    if args.output:
        _check_output(args.output)
    if args.compare:
        if args.outdir:
            raise VeriscopeUsageError("give either OUTDIR or --compare A B ..., not both")
        if len(args.compare) < 2:
            raise VeriscopeUsageError("--compare needs at least two OUTDIRs")
        if args.format == "html":
            raise VeriscopeUsageError("--compare supports --format text, md or json")
        text = compare_report(args.compare, fmt=args.format,
                              allow_incompatible=args.allow_incompatible,
                              allow_gate_preset_mismatch=args.allow_gate_preset_mismatch)
    else:
        if not args.outdir:
            raise VeriscopeUsageError("report needs OUTDIR (or --compare A B ...)")
        text = render_report(args.outdir, fmt=args.format)
    _emit(text, args.output)
    return EXIT_OK


def _cmd_override(args: argparse.Namespace) -> int:
    from veriscope_gate.capsule import MANUAL
    from veriscope_gate.override import apply_override

    _check_output(Path(args.outdir) / MANUAL)
    judgement = apply_override(args.outdir, status=args.status, reason=args.reason,
                               reviewer=args.reviewer, ts_utc=args.ts_utc)
    print(f"manual judgement recorded: {judgement.status} ({Path(args.outdir) / 'manual_judgement.json'})")
    return EXIT_OK


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from veriscope_gate.calibrate import calibrate, calibration_json, calibration_markdown

    for output in (args.out, args.out_md):
        _check_output(output)
    summary = calibrate(args.control_dir, args.injected_dir, onset=args.onset)
    _write_output(args.out, calibration_json(summary))
    _write_output(args.out_md, calibration_markdown(summary))
    print(f"calibration_status={summary['calibration_status']} FAR={summary['FAR']} "
          f"Delay_W={summary['Delay_W']} overhead={summary['overhead']} -> {args.out}, {args.out_md}")
    return EXIT_OK


def _cmd_diff(args: argparse.Namespace) -> int:
    from veriscope_gate.diff import diff_capsules, render_diff

    d = diff_capsules(args.a, args.b)
    sys.stdout.write(render_diff(d, args.format))
    if not d.compatible and not args.allow_incompatible:
        print("error: window signatures differ: the runs are not comparable without re-baselining",
              file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK


def _cmd_presets(args: argparse.Namespace) -> int:
    from veriscope_gate.controls import load_preset, preset_descriptions

    descriptions = preset_descriptions()
    if args.json:
        import attrs

        print(json.dumps({n: {"description": d, "controls": attrs.asdict(load_preset(n)),
                              "gate_controls_hash": load_preset(n).controls_hash()}
                          for n, d in sorted(descriptions.items())}, indent=2, sort_keys=True))
    else:
        for name, text in sorted(descriptions.items()):
            print(f"{name}: {text}")
    return EXIT_OK


def _cmd_metrics(_args: argparse.Namespace) -> int:
    from veriscope_gate.plugins import get_metric_registry

    for reg in get_metric_registry():
        lo, hi = reg.item.calibration_range
        print(f"{reg.item.name} [{lo:g}, {hi:g}] ({reg.plugin}): {reg.item.summary}")
    return EXIT_OK


def build_parser() -> _Parser:
    from veriscope_gate.version import __version__

    parser = _Parser(prog="veriscope",
                     description="Veriscope: a training reliability gate (finite-window divergence D_W).")
    parser.add_argument("--version", action="version", version=f"veriscope {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser("run", help="run a training command under the process-safe wrapper")
    run.add_argument("runner", choices=("gpt", "hf"), help="gpt: built-in tiny GPT; hf: HF Trainer runner")
    run.add_argument("--gate-preset", default="tuned_v0", help="gate preset (default tuned_v0; recorded)")
    run.add_argument("--outdir", required=True)
    run.add_argument("--force", action="store_true",
                     help="OUTDIR already holds artifacts: keep them and run in a fresh subdirectory")
    run.set_defaults(handler=_cmd_run)

    val = sub.add_parser("validate", help="validate a capsule against the v1 contracts (read-only)")
    val.add_argument("outdir")
    val.add_argument("--strict-governance", action="store_true")
    val.add_argument("--require-governance", action="store_true")
    val.add_argument("--strict-identity", action="store_true")
    val.add_argument("--allow-legacy-governance", action="store_true")
    val.add_argument("--allow-legacy", action="store_true",
                     help="accept reference v0 capsules that lack contract keys (one warning per key)")
    val.add_argument("--json", action="store_true", help="print the result as JSON")
    val.set_defaults(handler=_cmd_validate)

    rep = sub.add_parser("report", help="render a report (text, md, html) or compare capsules")
    rep.add_argument("outdir", nargs="?")
    rep.add_argument("--format", choices=("text", "md", "html", "json"), default="text")
    rep.add_argument("--compare", nargs="+", metavar="OUTDIR")
    rep.add_argument("--allow-incompatible", action="store_true")
    rep.add_argument("--allow-gate-preset-mismatch", action="store_true")
    rep.add_argument("--output", "-o", help="write to this file (atomically) instead of stdout")
    rep.set_defaults(handler=_cmd_report)

    ov = sub.add_parser("override", help="record a manual judgement overlay")
    ov.add_argument("outdir")
    ov.add_argument("--status", required=True, choices=("pass", "fail"))
    ov.add_argument("--reason", required=True)
    ov.add_argument("--reviewer", default=None)
    ov.add_argument("--ts-utc", dest="ts_utc", default=None)
    ov.set_defaults(handler=_cmd_override)

    cal = sub.add_parser("calibrate", help="FAR, Delay_W and overhead from control + injected capsules")
    cal.add_argument("--control-dir", required=True)
    cal.add_argument("--injected-dir", required=True)
    cal.add_argument("--out", default="calibration.json")
    cal.add_argument("--out-md", default="calibration.md")
    cal.add_argument("--onset", type=int, default=None,
                     help="pathology onset iteration (default: from the injected results.json)")
    cal.set_defaults(handler=_cmd_calibrate)

    dif = sub.add_parser("diff", help="show what differs between two capsules")
    dif.add_argument("a")
    dif.add_argument("b")
    dif.add_argument("--format", choices=("text", "json"), default="text")
    dif.add_argument("--allow-incompatible", action="store_true")
    dif.set_defaults(handler=_cmd_diff)

    pre = sub.add_parser("presets", help="list the shipped gate presets")
    pre.add_argument("--json", action="store_true")
    pre.set_defaults(handler=_cmd_presets)

    met = sub.add_parser("metrics", help="list the registered metrics (plugins)")
    met.set_defaults(handler=_cmd_metrics)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the exit code."""
    raw = list(sys.argv[1:] if argv is None else argv)
    runner_args: list[str] = []
    if "--" in raw:
        cut = raw.index("--")
        raw, runner_args = raw[:cut], raw[cut + 1 :]

    def body() -> int:
        parser = build_parser()
        args = parser.parse_args(raw)
        handler = getattr(args, "handler", None)
        if handler is None:
            parser.print_help(sys.stderr)
            return EXIT_INVALID
        if runner_args and args.command != "run":
            raise VeriscopeUsageError("arguments after -- are only accepted by veriscope run")
        args.runner_args = runner_args
        args.argv = list(sys.argv[1:] if argv is None else argv)
        code: int = handler(args)
        return code

    return run_handled(body, VeriscopeError)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
