"""Validation suites end to end: scenarios × models -> task graph -> reports -> verdict -> signed pack.

>>> from invarlock_packs.suite import run_suite
>>> result = run_suite("tiny", out="runs/tiny")   # doctest: +SKIP
>>> result.verdict, result.pack, result.signer_fingerprint   # doctest: +SKIP

Scenarios are package data (:mod:`~invarlock_packs.suite.scenarios`), suites name their models
(:mod:`~invarlock_packs.suite.models`), one typed configuration holds every knob
(:mod:`~invarlock_packs.suite.config`), and each task is a library call in a worker process
(:mod:`~invarlock_packs.suite.task_work`). Importing this package does not import torch.
"""

from __future__ import annotations

from invarlock_packs.suite.config import SuiteConfig, resolve_config
from invarlock_packs.suite.models import SUITES, SuiteModel
from invarlock_packs.suite.run import SuiteResult, run_suite
from invarlock_packs.suite.scenarios import Scenario, load_catalogue, select_scenarios

__all__ = [
    "SUITES",
    "Scenario",
    "SuiteConfig",
    "SuiteModel",
    "SuiteResult",
    "load_catalogue",
    "resolve_config",
    "run_suite",
    "select_scenarios",
]
