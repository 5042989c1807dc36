"""Edit metadata (``edit_metadata.json`` beside a report) must agree with ``metadata/scenarios.json``.

The builder refuses inconsistent inputs and the verifier re-checks sealed packs with the same
rule: the scenario named by ``scenario_id`` exists, and ``category``, ``artifact_class`` and
``edit_type`` agree wherever both documents state them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["COMPARED_FIELDS", "edit_metadata_problems", "scenarios_by_id"]

COMPARED_FIELDS = ("category", "artifact_class", "edit_type")


def scenarios_by_id(document: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The scenarios of a schema-valid ``scenarios.json`` document, by id."""
    return {str(s["id"]): s for s in document["scenarios"]}


def edit_metadata_problems(
    where: str, meta: Mapping[str, Any], scenarios: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """Every disagreement between one schema-valid edit metadata document and the scenarios."""
    scenario = scenarios.get(str(meta["scenario_id"]))
    if scenario is None:
        return [f"{where}: scenario {meta['scenario_id']!r} is not in scenarios.json"]
    return [
        f"{where}: {key} {meta[key]!r} disagrees with scenarios.json {scenario[key]!r}"
        for key in COMPARED_FIELDS
        if key in meta and key in scenario and meta[key] != scenario[key]
    ]
