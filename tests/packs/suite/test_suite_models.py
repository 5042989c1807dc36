"""Suite models: the seeds' suites, slugs, ``--model`` and ``MODEL_1..8`` slot overrides."""

from __future__ import annotations

import pytest

from invarlock_core.errors import UsageError
from invarlock_packs.suite.models import SUITES, apply_slot_overrides, slug_for, suite_models


def test_seed_suites() -> None:
    assert suite_models("subset") == ("mistralai/Mistral-7B-v0.1",)
    assert len(SUITES["full"]) == 6
    assert "Qwen/Qwen3-8B" in SUITES["full"]
    assert SUITES["workshop3"][1] == "mistralai/Mixtral-8x7B-v0.1"
    with pytest.raises(UsageError, match="unknown suite 'nope'"):
        suite_models("nope")


def test_slugs() -> None:
    assert slug_for("Qwen/Qwen2.5-14B") == "qwen__qwen2.5-14b"
    assert slug_for("tiny:gpt2") == "tiny-gpt2"


def test_model_slots_replace_and_disable() -> None:
    sources = SUITES["showcase"]
    env = {"MODEL_2": "", "MODEL_4": "org/extra"}
    models = apply_slot_overrides(sources, env)
    assert [m.source for m in models] == [sources[0], sources[2], "org/extra"]


def test_model_flags_replace_every_slot_and_slugs_stay_unique() -> None:
    models = apply_slot_overrides(SUITES["full"], {"MODEL_1": "ignored"}, ["a/m", "b/m", "a/m"])
    assert [m.slug for m in models] == ["a__m", "b__m", "a__m-2"]


def test_all_slots_empty_is_an_error() -> None:
    with pytest.raises(UsageError, match="no models left"):
        apply_slot_overrides(SUITES["subset"], {"MODEL_1": ""})
