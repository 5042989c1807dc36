"""Multiple-testing control across modules."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["benjamini_hochberg"]


def benjamini_hochberg(pvalues: Mapping[str, float], alpha: float) -> list[str]:
    """The keys rejected by the Benjamini–Hochberg step-up procedure at false-discovery rate ``alpha``.

    With the ``n`` p-values sorted ascending, the largest ``k`` with ``p_(k) <= k·alpha/n`` is
    found and the ``k`` smallest are rejected. Ties are broken by key, so the result does not
    depend on the mapping's order; the rejected keys come back sorted.
    """
    ranked = sorted(pvalues.items(), key=lambda item: (item[1], item[0]))
    n = len(ranked)
    cutoff = 0
    for rank, (_key, p) in enumerate(ranked, start=1):
        if p <= rank * alpha / n:
            cutoff = rank
    return sorted(key for key, _p in ranked[:cutoff])
