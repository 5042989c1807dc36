"""Fixtures for the final-verdict tests: one real suite run directory per session, and copies."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from verdicthelpers import build_run


@pytest.fixture(scope="session")
def suite_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Callable[..., Path]
) -> Path:
    """A pristine run directory: two tiny models x every scenario kind. Copy it before changing it."""
    root = tmp_path_factory.mktemp("suite")
    models = {"gpt2": tiny_model_dir("gpt2"), "llama": tiny_model_dir("llama")}
    return build_run(root / "run", models, root / "subjects")


@pytest.fixture
def run_copy(suite_run: Path, tmp_path: Path) -> Path:
    """A private copy of the run directory that a test may change."""
    return Path(shutil.copytree(suite_run, tmp_path / "run"))
