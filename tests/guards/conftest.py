"""Session fixtures of the guard tests: tiny models loaded once, with calibration windows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from guards_support import Loaded, load_for_guards


@pytest.fixture(scope="session")
def guard_model(tiny_model_dir: Callable[[str], Path]) -> Callable[[str], Loaded]:
    """``guard_model("gpt2")``: a tiny model loaded on CPU once per session."""
    cache: dict[str, Loaded] = {}

    def get(arch: str) -> Loaded:
        if arch not in cache:
            cache[arch] = load_for_guards(tiny_model_dir(arch), arch)
        return cache[arch]

    return get


@pytest.fixture(autouse=True)
def _single_thread_torch() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a shared CI box the thread pool's
    spin-waits make them many times slower; restore the setting after each test."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
