"""InvarLock evidence packs: build, sign and verify offline.

Nothing here imports torch or transformers: a reviewer verifies a pack with only
``invarlock-core`` and ``cryptography`` installed.

>>> from invarlock_packs import build_pack, verify_pack, inspect_pack, generate_key, run_suite
"""

from __future__ import annotations

from invarlock_packs.build import BuiltPack, ReportInput, build_pack
from invarlock_packs.html_export import export_pack_html
from invarlock_packs.inspect_pack import PackInspection, inspect_pack
from invarlock_packs.manifest_contents import evidence_level
from invarlock_packs.provenance import collect_environment, collect_source_repo
from invarlock_packs.signing import KeyPair, generate_key
from invarlock_packs.suite import SuiteResult, run_suite
from invarlock_packs.verify import Check, PackVerification, verify_pack
from invarlock_packs.version import __version__

__all__ = [
    "BuiltPack",
    "Check",
    "KeyPair",
    "PackInspection",
    "PackVerification",
    "ReportInput",
    "SuiteResult",
    "__version__",
    "build_pack",
    "collect_environment",
    "collect_source_repo",
    "evidence_level",
    "export_pack_html",
    "generate_key",
    "inspect_pack",
    "run_suite",
    "verify_pack",
]
