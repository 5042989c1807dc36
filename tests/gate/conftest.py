"""Fixtures of the Veriscope tests: synthetic capsules (fast) and cached copies of them."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from gate_helpers import make_capsule


@pytest.fixture(scope="session")
def capsule_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``capsule_factory("name", **kw)`` -> a fresh copy of a cached synthetic capsule."""
    cache: dict[tuple[object, ...], Path] = {}
    base = tmp_path_factory.mktemp("capsules")
    counter = [0]

    def build(name: str = "run", **kwargs: object) -> Path:
        key = tuple(sorted(kwargs.items()))
        if key not in cache:
            cache[key] = make_capsule(base / f"cached-{len(cache)}", **kwargs)  # type: ignore[arg-type]
        counter[0] += 1
        target = base / f"{name}-{counter[0]}"
        shutil.copytree(cache[key], target)
        return target

    return build
