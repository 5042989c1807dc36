"""``invarlock pack run``: run a validation suite end to end and hand back a signed, verified pack.

Flags override the environment (``PACK_*``, ``DRIFT_CALIBRATION_RUNS`` ...), which overrides a
``--suite-file`` (TOML). Exit codes: 0 PASS and the pack verifies, 1 FAIL, 2 bad input, 3 internal
error. See ``docs/reference/suite-knobs.md`` for every knob.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from invarlock_core.cli.arg_types import non_negative_int

__all__ = ["register"]


def _ids(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())



def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``run`` to the ``pack`` group."""
    run = sub.add_parser("run", help="run a validation suite and build, sign and verify its pack")
    run.add_argument(
        "--suite",
        help="tiny | subset | showcase | workshop3 | full (default $PACK_SUITE or subset)",
    )
    run.add_argument("--suite-file", type=Path, help="TOML suite file: models, scenario_ids, knobs")
    run.add_argument(
        "--out",
        type=Path,
        help="run directory (default $PACK_OUTPUT_DIR or ./evidence_pack_runs/<suite>_<time>)",
    )
    run.add_argument(
        "--model",
        action="append",
        dest="models",
        help="model path or HF id (repeat; replaces the suite's models)",
    )
    run.add_argument(
        "--scenario-ids", type=_ids, help="comma-separated scenario ids, honoured exactly"
    )
    run.add_argument("--resume", action="store_true", help="continue the run in --out")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument(
        "--calibrate-only",
        action="store_const",
        const="calibrate-only",
        dest="mode",
        help="stop after the presets",
    )
    mode.add_argument(
        "--run-only",
        action="store_const",
        const="run-only",
        dest="mode",
        help="continue a --calibrate-only run",
    )
    run.add_argument("--determinism", choices=("throughput", "strict"))
    run.add_argument(
        "--repeats", type=non_negative_int, help="rerun one edit N times (determinism summary)"
    )
    run.add_argument(
        "--net", type=int, choices=(0, 1), help="1: allow downloads and pin revisions (default 0)"
    )
    run.add_argument("--executor", choices=("local", "ray"))
    run.add_argument(
        "--signing-key", help="Ed25519 private key (default: generated once under OUT/keys/)"
    )
    run.add_argument(
        "--no-pack",
        action="store_false",
        dest="pack",
        default=None,
        help="stop after the final verdict",
    )
    run.add_argument(
        "--release-review",
        action="store_true",
        default=None,
        help="require PASS, a key and runtime manifests",
    )
    run.add_argument(
        "--skip-html", action="store_true", default=None, help="no index.html in the pack"
    )
    run.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from invarlock_packs.suite.progress import ProgressWatcher
    from invarlock_packs.suite.run import run_suite

    flags = {
        "models": tuple(args.models) if args.models else None,
        "scenario_ids": args.scenario_ids,
        "mode": args.mode,
        "determinism": args.determinism,
        "repeats": args.repeats,
        "net": None if args.net is None else bool(args.net),
        "executor": args.executor,
        "signing_key": args.signing_key,
        "pack": args.pack,
        "release_review": args.release_review,
        "skip_html": args.skip_html,
    }
    resume = args.resume or args.mode == "run-only"
    watchers: list[ProgressWatcher] = []

    def started(root: Path) -> None:
        print(f"run directory: {root}", file=sys.stderr, flush=True)
        watchers.append(ProgressWatcher(root).start())

    try:
        result = run_suite(
            args.suite,
            out=args.out,
            resume=resume,
            suite_file=args.suite_file,
            on_start=started,
            **flags,
        )
    finally:
        for watcher in watchers:
            watcher.stop()
    _print_result(result)
    return result.exit_code


def _print_result(result: Any) -> None:
    print(f"verdict: {result.verdict or 'none (no verdict compiled)'}")
    print(f"run directory: {result.out}")
    if result.pack is not None:
        state = "verified --strict" if result.pack_verified else "FAILED verification"
        print(f"pack: {result.pack} ({state})")
        print(f"signer: {result.signer_fingerprint or 'none (unsigned)'}")
        if result.key_generated:
            print(f"signing key generated: {result.out / 'keys' / 'signing_key.pem'} (mode 0600)")
        if result.html is not None:
            print(f"html: {result.html}")
    for problem in result.problems[:5]:
        print(f"problem: {problem}", file=sys.stderr)
