"""Fixtures for the trust-path tests: the evidence-pack fixtures, shared with ``tests/packs``.

The pack fixtures (real evaluation reports from tiny offline checkpoints, a key pair, a sealed
and signed pack) are defined once, in ``tests/packs/conftest.py``; this folder loads that module
by path so that ``pytest tests/security`` runs on its own.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PACKS = Path(__file__).resolve().parents[1] / "packs"
_GATE = Path(__file__).resolve().parents[1] / "gate"
for _helpers in (_PACKS, _GATE):  # ``packhelpers`` and ``gate_helpers``
    if str(_helpers) not in sys.path:
        sys.path.insert(0, str(_helpers))


def _load_pack_fixtures() -> object:
    spec = importlib.util.spec_from_file_location("_security_pack_fixtures", _PACKS / "conftest.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_pack_fixtures = _load_pack_fixtures()
real_reports = _pack_fixtures.real_reports  # type: ignore[attr-defined]
inputs = _pack_fixtures.inputs  # type: ignore[attr-defined]
key = _pack_fixtures.key  # type: ignore[attr-defined]
build_kwargs = _pack_fixtures.build_kwargs  # type: ignore[attr-defined]
sealed_pack = _pack_fixtures.sealed_pack  # type: ignore[attr-defined]
pack_copy = _pack_fixtures.pack_copy  # type: ignore[attr-defined]
_isolated_trust_store = _pack_fixtures._isolated_trust_store  # type: ignore[attr-defined]
