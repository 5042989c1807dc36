"""Scenarios as data: the shipped catalogue, suite filtering, exact ``--scenario-ids`` and the manifest."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invarlock_core.errors import ConfigError, UsageError
from invarlock_packs.suite.scenarios import (
    load_catalogue,
    read_scenarios,
    resolve_clean_edits,
    select_scenarios,
    write_scenarios,
)

CATALOGUE = load_catalogue()
IDS = [s.id for s in CATALOGUE]
TUNED = {
    "quant_rtn": {"bits": 4, "group_size": 32},
    "fp8_quant": {"format": "e4m3fn"},
    "magnitude_prune": {"prune_level": 0.1},
    "lowrank_svd": {"rank": 56},
}


def kinds(scenarios: object) -> dict[str, int]:
    counts: dict[str, int] = {}
    for scenario in scenarios:  # type: ignore[attr-defined]
        counts[scenario.kind] = counts.get(scenario.kind, 0) + 1
    return counts


def test_default_suites_have_the_seed_counts() -> None:
    subset = select_scenarios(CATALOGUE, "subset")
    assert kinds(subset) == {
        "clean": 4,
        "stress_required_fail": 2,
        "stress_informational": 2,
        "error_must_detect": 9,
        "error_informational": 3,
    }
    for suite in ("showcase", "workshop3", "full"):
        chosen = select_scenarios(CATALOGUE, suite)
        assert sum(1 for s in chosen if s.is_error) == 15
        assert sum(1 for s in chosen if not s.is_error) == 8


def test_error_injection_can_be_switched_off() -> None:
    chosen = select_scenarios(CATALOGUE, "subset", errors=False)
    assert chosen
    assert not any(s.is_error for s in chosen)


def test_every_scenario_is_labelled_consistently() -> None:
    for scenario in CATALOGUE:
        assert scenario.category == scenario.kind
        expected = (
            "fault_injection_fixture" if scenario.is_error else "validation_subject_checkpoint"
        )
        assert scenario.artifact_class == expected
        assert scenario.is_clean == (scenario.kind == "clean")


@given(st.sets(st.sampled_from(IDS), min_size=1))
def test_scenario_ids_are_honoured_exactly(ids: set[str]) -> None:
    chosen = select_scenarios(CATALOGUE, "subset", sorted(ids))
    assert {s.id for s in chosen} == ids
    assert [s.id for s in chosen] == [i for i in IDS if i in ids]  # catalogue order


def test_one_sided_selections_are_not_expanded() -> None:
    clean_only = select_scenarios(CATALOGUE, "subset", ["quant_4bit_clean", "prune_clean"])
    assert [s.kind for s in clean_only] == ["clean", "clean"]
    stress_only = select_scenarios(CATALOGUE, "subset", ["prune_50_stress"])
    assert [s.id for s in stress_only] == ["prune_50_stress"]


def test_unknown_scenario_id_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown scenario id 'quant_3bit_clean'"):
        select_scenarios(CATALOGUE, "subset", ["quant_4bit_clean", "quant_3bit_clean"])


def test_clean_sentinel_resolves_to_named_tuned_parameters() -> None:
    resolved = resolve_clean_edits(CATALOGUE, TUNED, clean_runs=3, stress_runs=2)
    by_id = {s.id: s for s in resolved}
    assert by_id["quant_4bit_clean"].edit == "quant_rtn:bits=4:group_size=32:ffn"
    assert by_id["quant_4bit_clean"].runs == 3
    assert by_id["prune_50_stress"].edit == "magnitude_prune:0.5:all"
    assert by_id["prune_50_stress"].runs == 2
    assert by_id["nan_injection"].runs == 1
    assert by_id["nan_injection"].edit_type == "nan_injection"


def test_missing_tuned_defaults_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no defaults for fp8_quant"):
        resolve_clean_edits(CATALOGUE, {"quant_rtn": {"bits": 4}}, clean_runs=1, stress_runs=1)


def test_manifest_round_trips_and_carries_the_contract_fields(tmp_path: Path) -> None:
    resolved = resolve_clean_edits(CATALOGUE[:3], TUNED, clean_runs=2, stress_runs=1)
    path = write_scenarios(tmp_path / "scenarios.json", resolved)
    assert read_scenarios(path) == resolved
    import json

    entry = json.loads(path.read_text())["scenarios"][0]
    assert json.loads(path.read_text())["format"] == "invarlock-suite-scenarios-v1"
    assert set(entry) >= {
        "id",
        "kind",
        "category",
        "edit_type",
        "edit",
        "edit_template",
        "artifact_class",
        "intent",
        "primary_guard",
        "runs",
        "suites",
    }
