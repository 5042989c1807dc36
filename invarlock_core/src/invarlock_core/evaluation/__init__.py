"""Paired evaluation of a subject against its baseline, step by step.

The steps live in small modules: :mod:`.windows` plans the evaluation windows, :mod:`.scoring`
computes per-window losses, :mod:`.paired_metric` and :mod:`.verdict` turn them into a judged
primary metric under a :mod:`.policy`, :mod:`.unchanged_tensors` and :mod:`.finiteness` give the
guards cheap facts about the subject, :mod:`.probe_sidecars` writes the optional probe files, and
:mod:`.run` ties the phases together as :func:`evaluate` (one subject) and :func:`evaluate_many`
(one baseline, measured once, for many subjects).

:func:`evaluate` and its records are importable from this package. They are resolved on first
use (PEP 562) so that importing one step, say :mod:`.policy` from the report verifier, does not
pull in the whole pipeline and the report writer it depends on.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from invarlock_core.evaluation.run import (
        EDIT_METADATA_NAME,
        BaselineState,
        EvaluationOutcome,
        EvaluationRequest,
        ManyOutcome,
        evaluate,
        evaluate_many,
    )

__all__ = [
    "EDIT_METADATA_NAME",
    "BaselineState",
    "EvaluationOutcome",
    "EvaluationRequest",
    "ManyOutcome",
    "evaluate",
    "evaluate_many",
]

_HOME = {name: "invarlock_core.evaluation.run" for name in __all__}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
