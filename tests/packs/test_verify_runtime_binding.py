"""A report in a pack binds its runtime manifest: a manifest from another run, correctly re-sealed
into the pack, fails the nested report verification (exit 7), also under strict assurance."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from packhelpers import reseal

from invarlock_packs import verify_pack


def test_a_runtime_manifest_from_another_run_fails_nested_verification(pack_copy: Path, key: Any) -> None:
    manifests = sorted(pack_copy.glob("reports/**/runtime.manifest.json"))
    assert len(manifests) >= 2
    assert verify_pack(pack_copy, report_assurance="strict").ok
    foreign = next(m for m in manifests[1:] if m.read_bytes() != manifests[0].read_bytes())
    shutil.copyfile(foreign, manifests[0])
    reseal(pack_copy, key.private_key_path)
    for assurance in ("strict", None):
        result = verify_pack(pack_copy, report_assurance=assurance) if assurance else verify_pack(pack_copy)
        assert result.exit_code == 7
        assert any("runtime.manifest.json" in problem for problem in result.problems)
