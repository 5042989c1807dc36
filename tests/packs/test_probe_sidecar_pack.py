"""Probe sidecars in evidence packs: packed beside their report, sealed, and bound to its digest.

The report comes from a real ``evaluate`` of the ``rmt_norm_noise`` injection on a tiny GPT-2,
which writes ``rmt_probe.json`` beside ``evaluation.report.json`` and records its sha256.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from packhelpers import report_dir, reseal

from invarlock_packs import build_pack, inspect_pack, verify_pack
from invarlock_packs.errors import PackReportError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def probed_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Callable[..., Path]
) -> Path:
    """A suite-like run directory: a report, its ``rmt_probe.json`` and the usual sidecars."""
    from invarlock_core.evaluation import EvaluationRequest, evaluate
    from invarlock_core.plugins import get_registries

    registries = get_registries()
    if "rmt_norm_noise" not in registries.edits or "rmt" not in registries.guards:
        pytest.skip("the suite extra (invarlock-edits, invarlock-guards) is not installed")
    out = tmp_path_factory.mktemp("probed") / "eval"
    outcome = evaluate(
        EvaluationRequest(
            baseline=tiny_model_dir("gpt2"),
            edit="rmt_norm_noise",
            out=out,
            device="cpu",
            seq_len=64,
            preview_windows=2,
            final_windows=8,
            bootstrap_replicates=200,
            guards=("invariants", "rmt"),
        ),
        registries=registries,
    )
    assert outcome.report["probe"]["status"] == "written"
    run = out.parent / "runs/gpt2/rmt_norm_noise/run1"
    report = report_dir(
        run,
        outcome.report_path,
        scenario="noop_clean",
        category="clean",
        edit_type="noop",
        artifact_class="validation_subject_checkpoint",
    )
    shutil.copyfile(out / "rmt_probe.json", run / "rmt_probe.json")
    return report


def _build(tmp_path: Path, build_kwargs: dict[str, Any], report: Path) -> Path:
    reports = [*build_kwargs["reports"], report]
    return build_pack(tmp_path / "pack", **{**build_kwargs, "reports": reports}).path


def test_the_probe_sidecar_is_packed_sealed_and_verified(
    tmp_path: Path, build_kwargs: dict[str, Any], probed_run: Path
) -> None:
    pack = _build(tmp_path, build_kwargs, probed_run)
    packed = sorted(pack.glob("reports/*/*/*/rmt_probe.json"))
    assert len(packed) == 1
    assert packed[0].read_bytes() == (probed_run.parent / "rmt_probe.json").read_bytes()
    rel = packed[0].relative_to(pack).as_posix()
    assert f"  {rel}" in (pack / "checksums.sha256").read_text()
    inventory = inspect_pack(pack)
    entry = next(
        r
        for r in inventory.reports
        if r.path == rel.replace("rmt_probe.json", "evaluation.report.json")
    )
    assert "rmt_probe.json" in entry.sidecars
    result = verify_pack(pack, strict=True, use_default_trust_store=False)
    assert result.ok, result.problems
    assert result.reports_checked == 3


def test_a_resealed_pack_whose_probe_differs_from_the_report_fails_nested_verification(
    tmp_path: Path, build_kwargs: dict[str, Any], probed_run: Path, key: Any
) -> None:
    pack = _build(tmp_path, build_kwargs, probed_run)
    sidecar = next(pack.glob("reports/*/*/*/rmt_probe.json"))
    sidecar.write_bytes(sidecar.read_bytes().replace(b'"rmt_stable":true', b'"rmt_stable":false'))
    reseal(pack, key.private_key_path)  # checksums and signature are valid again
    result = verify_pack(pack, use_default_trust_store=False)
    assert result.exit_code == 7
    assert (
        "probe sidecar rmt_probe.json differs from the sha256 the report records"
        in result.problems[0]
    )


def test_build_refuses_a_report_beside_another_run_s_probe(
    tmp_path: Path, build_kwargs: dict[str, Any], probed_run: Path
) -> None:
    run = Path(shutil.copytree(probed_run.parent, tmp_path / "run"))
    (run / "rmt_probe.json").write_bytes(b'{"kind":"rmt_probe","schema_version":1}')
    with pytest.raises(PackReportError, match=r"probe sidecar rmt_probe\.json differs"):
        _build(tmp_path, build_kwargs, run / "evaluation.report.json")
    assert not (tmp_path / "pack").exists()
