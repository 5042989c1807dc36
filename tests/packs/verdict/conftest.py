"""Fixtures for the final-verdict tests: one real suite run directory per session, and copies."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from verdicthelpers import build_run, build_suite_pack


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


@pytest.fixture(scope="session")
def verdict_run(suite_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the run with its verdict outputs written (``OUT/reports/``)."""
    from invarlock_packs.suite.verdict import compile_final_verdict, write_verdict_outputs

    run = Path(shutil.copytree(suite_run, tmp_path_factory.mktemp("verdict") / "run"))
    write_verdict_outputs(run, compile_final_verdict(run))
    return run


@pytest.fixture(scope="session")
def suite_pack(verdict_run: Path, tmp_path_factory: pytest.TempPathFactory, key: Any) -> Path:
    """A signed pack of the whole run, built as the suite builds it. Copy it before changing it."""
    return build_suite_pack(verdict_run, tmp_path_factory.mktemp("pack") / "pack", key)


@pytest.fixture
def suite_pack_copy(suite_pack: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(suite_pack, tmp_path / "pack"))
