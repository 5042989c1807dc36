"""``invarlock edit apply`` and ``invarlock edit list``.

``apply`` resolves the edit from every installed plugin, builds the output in a hidden sibling
directory and renames it into place only when the checkpoint and ``edit_metadata.json`` are
complete, so a failed edit never leaves a partial checkpoint at ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from invarlock_core.atomic import staged_directory
from invarlock_core.cli.output import print_json
from invarlock_core.editing import Edit, EditSpec
from invarlock_core.errors import UsageError
from invarlock_core.output_checks import check_output_location

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    edit = subparsers.add_parser(
        "edit", help="create edited checkpoints and error-injection fixtures"
    )
    sub = edit.add_subparsers(dest="edit_command", metavar="ACTION", required=True)
    apply = sub.add_parser(
        "apply",
        help="write an edited checkpoint plus edit_metadata.json",
        description="Apply an edit spec (NAME[:ARG...], e.g. quant_rtn:4:32:all) to a baseline checkpoint.",
    )
    apply.add_argument("--baseline", required=True, type=Path, help="baseline checkpoint directory")
    apply.add_argument(
        "--edit", required=True, metavar="SPEC", help="edit spec, e.g. magnitude_prune:0.5:ffn"
    )
    apply.add_argument("--out", required=True, type=Path, help="output directory (must not exist)")
    apply.add_argument(
        "--seed", type=int, default=0, help="seed for randomized edits and injections"
    )
    apply.add_argument(
        "--tuned-params",
        type=Path,
        default=None,
        metavar="FILE",
        help="tuned clean-edit parameters for NAME:clean specs (default: $PACK_TUNED_EDIT_PARAMS_FILE)",
    )
    apply.add_argument("--device", default=None, help="cpu (default), cuda[:N] or auto")
    apply.add_argument(
        "--scenario-id",
        default=None,
        help="scenario id recorded for evidence packs (default: the edit name)",
    )
    apply.add_argument(
        "--category", default=None, help="scenario category recorded for evidence packs"
    )
    apply.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out directory"
    )
    apply.add_argument("--json", action="store_true", help="print edit_metadata.json to stdout")
    apply.set_defaults(handler=_apply)
    listing = sub.add_parser(
        "list", help="list every installed edit and error injection with its parameters"
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=_list)


def _progress(total: int) -> Any:
    if not sys.stderr.isatty():
        return None, None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="B", unit_scale=True, desc="edit", file=sys.stderr, leave=False)
    return bar, bar.update


def apply_edit(
    edit: Edit,
    spec: EditSpec,
    *,
    baseline: Path,
    out: Path,
    seed: int,
    overwrite: bool = False,
    device: str | None = None,
    tuned_params: Path | None = None,
    scenario_id: str | None = None,
    category: str | None = None,
) -> dict[str, Any]:
    """Apply ``edit`` with the output staged and renamed atomically; return its metadata.

    ``scenario_id`` (default: the edit's name) and ``category`` label the subject in
    ``edit_metadata.json`` for evidence packs.
    """
    from invarlock_core.models import validate_checkpoint_dir
    from invarlock_edits.checkpoint import Checkpoint
    from invarlock_edits.external import describe_external_edit
    from invarlock_edits.metadata import SubjectLabels
    from invarlock_edits.streaming_edit import StreamingEdit

    validate_checkpoint_dir(baseline)
    if out.resolve() == baseline.resolve() or baseline.resolve() in out.resolve().parents:
        raise UsageError(f"--out {out} must not be the baseline directory or inside it")
    if out.exists() and not overwrite:
        raise UsageError(f"--out {out} already exists (pass --overwrite to replace it)")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    labels = SubjectLabels(scenario_id, category)
    with staged_directory(out, overwrite=overwrite) as stage:
        if isinstance(edit, StreamingEdit):
            bar, update = _progress(Checkpoint.open(baseline).total_bytes)
            try:
                metadata = edit.apply(
                    spec,
                    baseline=baseline,
                    out=stage,
                    seed=seed,
                    device=device,
                    tuned_params=tuned_params,
                    progress=update,
                    labels=labels,
                )
            finally:
                if bar is not None:
                    bar.close()
        else:
            if tuned_params is not None:
                raise UsageError(
                    f"--tuned-params is not supported by the third-party edit {edit.name}"
                )
            returned = edit.apply(spec, baseline=baseline, out=stage, seed=seed)
            metadata = describe_external_edit(
                edit,
                spec,
                baseline=baseline,
                out=stage,
                seed=seed,
                returned=returned,
                labels=labels,
            )
    return metadata


def _apply(args: argparse.Namespace) -> int:
    from invarlock_core.plugins import get_registries

    check_output_location(args.out, what="--out")
    spec = EditSpec.parse(args.edit)
    edit = get_registries().edits.get(spec.name)
    metadata = apply_edit(
        edit,
        spec,
        baseline=args.baseline,
        out=args.out,
        seed=args.seed,
        overwrite=args.overwrite,
        device=args.device,
        tuned_params=args.tuned_params,
        scenario_id=args.scenario_id,
        category=args.category,
    )
    if args.json:
        print_json(metadata)
        return 0
    coverage = metadata["coverage"]
    print(
        f"wrote {args.out}: {metadata['resolved_spec']} ({metadata['artifact_class']}); "
        f"changed {coverage['tensors_changed']}/{coverage['tensors_total']} tensors, "
        f"{coverage.get('elements_changed', 0)} elements; output {metadata['output']['digest']}"
    )
    return 0


def _describe(edit: Edit, plugin: str) -> dict[str, Any]:
    from invarlock_edits.params import usage
    from invarlock_edits.streaming_edit import StreamingEdit

    entry: dict[str, Any] = {
        "name": edit.name,
        "summary": edit.summary,
        "artifact_class": edit.artifact_class,
        "plugin": plugin,
        "parameters": [
            {
                "name": p.name,
                "kind": p.kind,
                "default": p.default,
                "help": p.help,
                "choices": list(p.choices),
            }
            for p in edit.parameters
        ],
    }
    if isinstance(edit, StreamingEdit):
        entry["usage"] = usage(edit.name, edit.specs)
        entry["description"] = edit.description
        entry["storage_format"] = edit.storage_format
        entry["clean_sentinel"] = edit.supports_clean
        entry["detection"] = edit.detection.to_json() if edit.detection else None
    return entry


def _list(args: argparse.Namespace) -> int:
    from invarlock_core.plugins import get_registries

    entries = [_describe(reg.item, reg.plugin) for reg in get_registries().edits]
    if args.json:
        print_json(entries)
        return 0
    for group, title in (
        ("validation_subject_checkpoint", "Edits"),
        ("fault_injection_fixture", "Error injections"),
        ("deployable_optimized_subject", "Deployable edits"),
    ):
        chosen = [e for e in entries if e["artifact_class"] == group]
        if not chosen:
            continue
        print(f"{title}:")
        for entry in chosen:
            print(f"  {entry.get('usage', entry['name'])}  [{entry['plugin']}]")
            print(f"      {entry['summary']}")
            for param in entry["parameters"]:
                default = "required" if param["default"] is None else f"default {param['default']}"
                print(f"      {param['name']} ({param['kind']}, {default}): {param['help']}")
            detection = entry.get("detection")
            if detection:
                print(
                    f"      detection: {detection['requirement']} by {' or '.join(detection['guards'])}"
                )
    return 0
