"""The invariants guard: structural facts of the subject that must equal the baseline's.

Checked, each against the baseline: non-finite values in parameters and buffers (NaN/Inf is always
a failure), missing and extra tensors, shapes, dtypes, the parameter count, vocabulary and
embedding sizes, which parameters share storage (weight tying: a broken or new tie is a failure),
the norm layers, and a structure hash over the sorted ``module-path:ModuleType`` list.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from invarlock_core.canonical import canonical_digest
from invarlock_core.evaluation.finiteness import nonfinite_counts
from invarlock_core.evaluation.unchanged_tensors import storage_groups
from invarlock_core.guarding import GuardContext, GuardResult, ModelUnderTest, Severity, Violation
from invarlock_core.optional_deps import require
from invarlock_guards.results import guard_result
from invarlock_guards.settings_checks import check_choice
from invarlock_guards.tiers import guard_settings

__all__ = ["InvariantsGuard", "StructureSnapshot", "compare_structures", "snapshot_structure"]


@attrs.frozen
class StructureSnapshot:
    """The structural facts of one model that the invariants guard compares."""

    tensors: Mapping[str, tuple[tuple[int, ...], str]]
    """Every parameter (all tied names) and buffer: shape and dtype."""
    nonfinite: Mapping[str, int]
    """Tensors with NaN/Inf values and how many."""
    parameter_count: int
    tie_groups: tuple[tuple[str, ...], ...]
    """Groups of parameter names that share storage, sorted."""
    vocab: Mapping[str, int | None]
    norm_layers: tuple[str, ...]
    structure_hash: str


def _embedding_rows(module: Any) -> int | None:
    weight = getattr(module, "weight", None) if module is not None else None
    if weight is None or weight.ndim != 2:
        return None
    return int(weight.shape[0])


def _vocab(model: Any) -> dict[str, int | None]:
    def call(method: str) -> Any:
        getter = getattr(model, method, None)
        try:
            return getter() if callable(getter) else None
        except (NotImplementedError, AttributeError):
            return None

    config_vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    return {
        "config_vocab_size": int(config_vocab) if isinstance(config_vocab, int) else None,
        "input_embeddings": _embedding_rows(call("get_input_embeddings")),
        "output_embeddings": _embedding_rows(call("get_output_embeddings")),
    }


def snapshot_structure(
    model: Any, *, nonfinite: Mapping[str, int] | None = None
) -> StructureSnapshot:
    """Measure ``model``'s structural facts (on its device; only counts leave it).

    ``nonfinite``: the NaN/Inf counts already taken (see ``ModelUnderTest.nonfinite``); the
    tensors are then not counted again, and the counts extend to every alias of a tied tensor.
    """
    torch = require("torch", purpose="the invariants guard")
    tensors: dict[str, tuple[tuple[int, ...], str]] = {}
    parameters = list(model.named_parameters(remove_duplicate=False))
    named = [*parameters, *model.named_buffers(remove_duplicate=False)]
    for name, tensor in named:
        tensors[name] = (
            tuple(int(d) for d in tensor.shape),
            str(tensor.dtype).removeprefix("torch."),
        )
    if nonfinite is None:
        with torch.no_grad():
            counts = nonfinite_counts(named)
    else:
        by_tensor = {id(tensor): nonfinite[name] for name, tensor in named if name in nonfinite}
        counts = {name: by_tensor[id(t)] for name, t in named if id(t) in by_tensor}
    unique = {id(p): p for _name, p in parameters}
    structure = sorted(f"{name}:{type(module).__name__}" for name, module in model.named_modules())
    norm_layers = tuple(entry for entry in structure if "norm" in entry.rpartition(":")[2].lower())
    return StructureSnapshot(
        tensors=tensors,
        nonfinite=counts,
        parameter_count=sum(int(p.numel()) for p in unique.values()),
        tie_groups=tuple(
            sorted(tuple(sorted(names)) for names in storage_groups(parameters) if len(names) > 1)
        ),
        vocab=_vocab(model),
        norm_layers=norm_layers,
        structure_hash=canonical_digest(structure),
    )


def _listed(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def compare_structures(
    baseline: StructureSnapshot, subject: StructureSnapshot, *, dtype_change: Severity
) -> tuple[list[Violation], dict[str, Any]]:
    """Violations and metrics of ``subject`` against ``baseline``."""
    found: list[Violation] = []
    for name, count in sorted(subject.nonfinite.items()):
        found.append(
            Violation(
                name, f"{count} non-finite value(s) (NaN/Inf)", value=float(count), threshold=0.0
            )
        )
    for name, count in sorted(baseline.nonfinite.items()):
        found.append(
            Violation(name, f"the baseline itself has {count} non-finite value(s)", severity="warn")
        )
    missing = sorted(baseline.tensors.keys() - subject.tensors.keys())
    extra = sorted(subject.tensors.keys() - baseline.tensors.keys())
    found.extend(Violation(name, "tensor missing from the subject") for name in missing)
    found.extend(Violation(name, "tensor not present in the baseline") for name in extra)
    shape_changes = 0
    for name in sorted(baseline.tensors.keys() & subject.tensors.keys()):
        (b_shape, b_dtype), (s_shape, s_dtype) = baseline.tensors[name], subject.tensors[name]
        if b_shape != s_shape:
            shape_changes += 1
            found.append(
                Violation(
                    name, f"shape {list(s_shape)} differs from the baseline's {list(b_shape)}"
                )
            )
        if b_dtype != s_dtype and dtype_change != "pass":
            found.append(
                Violation(
                    name,
                    f"dtype {s_dtype} differs from the baseline's {b_dtype}",
                    severity=dtype_change,
                )
            )
    if subject.parameter_count != baseline.parameter_count:
        found.append(
            Violation(
                "model",
                f"parameter count {subject.parameter_count} differs from the baseline's {baseline.parameter_count}",
                value=float(subject.parameter_count),
                threshold=float(baseline.parameter_count),
            )
        )
    for key in sorted(baseline.vocab):
        if baseline.vocab[key] != subject.vocab.get(key):
            found.append(
                Violation(
                    key,
                    f"{subject.vocab.get(key)} differs from the baseline's {baseline.vocab[key]}",
                )
            )
    if baseline.tie_groups != subject.tie_groups:
        lost = sorted(set(baseline.tie_groups) - set(subject.tie_groups))
        new = sorted(set(subject.tie_groups) - set(baseline.tie_groups))
        for group in lost:
            found.append(
                Violation(" = ".join(group), "weight tie of the baseline is broken in the subject")
            )
        for group in new:
            found.append(
                Violation(
                    " = ".join(group), "weights are tied in the subject but not in the baseline"
                )
            )
    if baseline.norm_layers != subject.norm_layers:
        changed = sorted(set(baseline.norm_layers) ^ set(subject.norm_layers))
        found.append(
            Violation("norm_layers", f"norm layers differ from the baseline: {_listed(changed)}")
        )
    if baseline.structure_hash != subject.structure_hash:
        found.append(
            Violation(
                "structure", "module structure (sorted path:type list) differs from the baseline"
            )
        )
    metrics = {
        "tensors": len(subject.tensors),
        "parameter_count": subject.parameter_count,
        "baseline_parameter_count": baseline.parameter_count,
        "nonfinite_tensors": len(subject.nonfinite),
        "nonfinite_values": sum(subject.nonfinite.values()),
        "missing_tensors": len(missing),
        "extra_tensors": len(extra),
        "shape_changes": shape_changes,
        "tied_groups": len(subject.tie_groups),
        "baseline_tied_groups": len(baseline.tie_groups),
        "vocab": dict(subject.vocab),
        "norm_layers": len(subject.norm_layers),
        "structure_hash": subject.structure_hash,
        "baseline_structure_hash": baseline.structure_hash,
    }
    return found, metrics


@attrs.frozen
class _InvariantsState:
    dtype_change: Severity
    snapshot: StructureSnapshot


class InvariantsGuard:
    """Structure, finiteness and weight tying of the subject vs the baseline."""

    name = "invariants"
    summary = (
        "non-finite values, tensors, shapes, vocab, weight tying and structure vs the baseline"
    )

    def prepare(self, baseline: ModelUnderTest, context: GuardContext) -> _InvariantsState:
        settings = guard_settings(self.name, context.tier, context.options)
        check_choice(settings, "dtype_change", ("pass", "warn", "fail"), where="guards.invariants")
        return _InvariantsState(settings["dtype_change"], snapshot_structure(baseline.model))

    def validate(
        self, subject: ModelUnderTest, baseline_state: _InvariantsState, context: GuardContext
    ) -> GuardResult:
        snapshot = snapshot_structure(subject.model, nonfinite=subject.nonfinite)
        violations, metrics = compare_structures(
            baseline_state.snapshot, snapshot, dtype_change=baseline_state.dtype_change
        )
        return guard_result(
            self.name,
            violations,
            metrics=metrics,
            thresholds={"nonfinite_values": 0, "dtype_change": baseline_state.dtype_change},
        )
