"""``invarlock calibrate``: derive a preset from seeded noop evaluations of one baseline."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``calibrate`` sub-command."""
    parser = subparsers.add_parser(
        "calibrate",
        help="derive a calibrated preset (TOML + JSON) from seeded noop evaluations",
        description=(
            "Run N seeded noop evaluations of the baseline against itself, check that no guard "
            "fires, and write calibrated_preset_<model>.toml/.json whose thresholds are the "
            "tier's, widened where the observed null movement times the margin is larger."
        ),
    )
    parser.add_argument(
        "--baseline", required=True, type=Path, help="baseline checkpoint directory"
    )
    parser.add_argument(
        "--runs", type=int, default=5, help="number of seeded noop runs (default 5)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("presets"), help="output directory (default presets/)"
    )
    parser.add_argument(
        "--tier", default=None, help="guard tier (default $INVARLOCK_TIER or balanced)"
    )
    parser.add_argument("--profile", default="dev", help="evaluation profile (default dev)")
    parser.add_argument(
        "--margin", type=float, default=2.0, help="safety factor on the observed null (default 2.0)"
    )
    parser.add_argument(
        "--first-seed", type=int, default=1, help="seed of the first run (default 1)"
    )
    parser.add_argument(
        "--dataset", default=None, help="dataset provider (default: the core's default)"
    )
    parser.add_argument(
        "--data-path", default=None, help="local dataset file for providers that need one"
    )
    parser.add_argument("--seq-len", type=int, default=None)
    parser.add_argument("--preview-windows", type=int, default=None)
    parser.add_argument("--final-windows", type=int, default=None)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:n]")
    parser.add_argument(
        "--name", default=None, help="model name in the file names (default: baseline dir name)"
    )
    parser.add_argument(
        "--keep-runs",
        action="store_true",
        help="keep the noop evaluation reports under OUT/calibration/",
    )
    parser.add_argument("--json", action="store_true", help="print the preset as JSON on stdout")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from invarlock_core.cli.output import print_json
    from invarlock_core.errors import UsageError
    from invarlock_core.output_checks import check_output_location
    from invarlock_guards.calibration import CalibrationRequest, calibrate

    # --name becomes part of file names under --out: one plain component, never a path.
    if args.name is not None and (
        not args.name or args.name.startswith(".") or any(c in args.name for c in "/\\\0")
    ):
        raise UsageError(f"--name must be a plain file-name component, got {args.name!r}")

    check_output_location(args.out, what="--out")
    outcome = calibrate(
        CalibrationRequest(
            baseline=args.baseline,
            runs=args.runs,
            out=args.out,
            tier=args.tier,
            profile=args.profile,
            margin=args.margin,
            first_seed=args.first_seed,
            dataset=args.dataset,
            data_path=args.data_path,
            seq_len=args.seq_len,
            preview_windows=args.preview_windows,
            final_windows=args.final_windows,
            device=args.device,
            name=args.name,
            keep_runs=args.keep_runs,
        )
    )
    if args.json:
        print_json(outcome.preset)
    else:
        print(f"wrote {outcome.toml_path}")
        print(f"wrote {outcome.json_path}")
    return 0
