"""The guards on the real pretrained MiniLM-L6 checkpoint (BERT-style encoder, no LM head)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from guards_support import (
    Loaded,
    damaged,
    failed,
    load_for_guards,
    low_rank_,
    matrices,
    prune_,
    rtn_,
    run_guards,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def minilm(minilm_dir: Path) -> Loaded:
    return load_for_guards(minilm_dir, "bert")


def test_minilm_noop_is_clean_and_every_family_is_measured(minilm: Loaded) -> None:
    results = run_guards(minilm)
    assert all(r.severity == "pass" for r in results.values())
    assert results["spectral"].metrics["families"]["ffn"]["modules"] == 12
    assert results["spectral"].metrics["families"]["attn"]["modules"] == 24
    assert results["variance"].metrics["branches"] == 6
    assert results["variance"].metrics["ab"]["ran"] is False  # an encoder has no next-token loss


def _ffn_output(m: Any) -> Any:
    return m.encoder.layer[2].output.dense.weight


def test_minilm_clean_and_stress_statistics_separate(minilm: Loaded) -> None:
    clean = {
        "rtn8_ffn": lambda m: [rtn_(p, 8) for p in matrices(m).values()],
        "prune10_ffn": lambda m: [prune_(p, 0.10) for p in matrices(m).values()],
    }
    stress = {
        "x20_one_ffn": lambda m: _ffn_output(m).mul_(20.0),
        "rank4_ffn": lambda m: [low_rank_(p, 4) for p in matrices(m).values()],
        "rtn2_all": lambda m: [rtn_(p, 2) for p in matrices(m, ("ffn", "attn")).values()],
    }

    def worst(results: dict[str, Any]) -> tuple[float, float, float]:
        families = results["spectral"].metrics["families"]
        ratio = max(max(f["max_sigma_ratio"], 1 / f["min_sigma_ratio"]) for f in families.values())
        stable = min(f["min_stable_rank_ratio"] for f in families.values())
        change = max(f["max_relative_change"] for f in families.values())
        return ratio, stable, change

    clean_stats = {}
    for label, edit in clean.items():
        results = run_guards(minilm, damaged(minilm.loaded.model, edit))
        assert failed(results) == set(), (label, {n: r.violations[:1] for n, r in results.items()})
        clean_stats[label] = worst(results)
    for label, edit in stress.items():
        results = run_guards(minilm, damaged(minilm.loaded.model, edit), names=("spectral",))
        assert "spectral" in failed(results), label
        ratio, stable, change = worst(results)
        # Each stress edit is far outside the clean edits on at least one baseline-relative statistic.
        assert (
            ratio > 2 * max(s[0] for s in clean_stats.values())
            or stable < 0.5 * min(s[1] for s in clean_stats.values())
            or change > 4 * max(s[2] for s in clean_stats.values())
        ), (label, ratio, stable, change, clean_stats)
