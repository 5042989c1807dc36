"""``invarlock verify REPORT... [--profile P] [--check-models] [--json]``.

Exit codes: 0 every report verified, 1 a report failed verification, 2 a report is unreadable or
invalid (the highest code wins when several reports are given). Verified reports are listed on
stdout; failed or invalid ones, with their problems, on stderr (``--json`` prints everything on
stdout).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from invarlock_core.cli.output import print_json

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "verify",
        help="independently re-check evaluation reports (schema, digests, recomputed verdict)",
        description="Recompute digests and the verdict of each report from its recorded per-window "
        "numbers and policy. Exit 0 verified, 1 verification failed, 2 unreadable or invalid.",
    )
    p.add_argument("reports", nargs="+", metavar="REPORT", help="evaluation.report.json files or their directories")
    p.add_argument("--profile", choices=("dev", "ci", "release"), help="also require this profile's evidence floors")
    p.add_argument("--check-models", action="store_true", help="re-hash the checkpoint files still on disk")
    p.add_argument("--require-pass", action="store_true", help="also fail (exit 1) on a verified FAIL verdict")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from invarlock_core.report.verification import verify_report_file

    results = []
    code = 0
    for name in args.reports:
        result = verify_report_file(Path(name), profile=args.profile, check_models=args.check_models)
        data = result.to_json()
        if args.require_pass and result.ok and result.verdict != "PASS":
            data["ok"], data["exit_code"] = False, 1
            data["problems"] = [*data["problems"], f"verdict is {result.verdict} (--require-pass)"]
        code = max(code, int(data["exit_code"]))
        results.append(data)
    if args.json:
        print_json({"ok": code == 0, "exit_code": code, "reports": results})
        return code
    for data in results:
        _print_result(data)
    return code


def _print_result(data: dict[str, Any]) -> None:
    """A verified report on stdout; a failed or invalid one, with its problems, on stderr."""
    stream = sys.stdout if data["ok"] else sys.stderr
    status = "OK" if data["ok"] else ("INVALID" if data["exit_code"] == 2 else "FAILED")
    verdict = f" (verdict {data['verdict']})" if data["verdict"] else ""
    print(f"{status}  {data['path']}{verdict}", file=stream)
    if data["summary"]:
        print(f"  {data['summary']}", file=stream)
    for problem in data["problems"]:
        print(f"  - {problem}", file=stream)
