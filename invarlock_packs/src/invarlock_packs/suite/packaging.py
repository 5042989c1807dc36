"""The end of a run: build the evidence pack, sign it, and verify it ``--strict``.

The signing key is ``--signing-key`` / ``PACK_SIGNING_KEY``; without one, a key is generated once
under ``OUT/keys/signing_key.pem`` (mode 0600) and reused, so a resumed run signs with the same key
and the fingerprint printed the first time stays valid. The pack is staged and swapped into place
by :func:`~invarlock_packs.build.build_pack`, so a failed build leaves no partial pack; a rebuild
of a resumed run replaces the previous pack in one rename.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

import attrs

from invarlock_core.errors import InputError
from invarlock_packs.build import BuiltPack, ReportInput, build_pack
from invarlock_packs.signing import fingerprint, load_private_key
from invarlock_packs.suite.config import SuiteConfig
from invarlock_packs.suite.models import SuiteModel
from invarlock_packs.suite.run_layout import RunLayout
from invarlock_packs.suite.scenarios import Scenario
from invarlock_packs.verify import PackVerification, verify_pack

__all__ = ["GENERATED_KEY", "PackOutcome", "pack_reports", "package_run", "signing_key_path"]

GENERATED_KEY: Final = "signing_key.pem"
_REPORT: Final = "evaluation.report.json"


@attrs.frozen
class PackOutcome:
    """The built pack and its strict verification."""

    built: BuiltPack
    verification: PackVerification
    key_generated: bool


def signing_key_path(config: SuiteConfig, layout: RunLayout) -> tuple[Path, bool]:
    """The key to sign with, generating ``OUT/keys/signing_key.pem`` once when none is configured."""
    from invarlock_packs.signing import generate_key

    if config.signing_key:
        path = Path(config.signing_key)
        if not path.is_file():
            raise InputError(f"signing key {path} does not exist")
        return path, False
    path = layout.keys / GENERATED_KEY
    if path.is_file():
        return path, False
    layout.keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    generate_key(path)
    return path, True


def pack_reports(
    layout: RunLayout, models: Sequence[SuiteModel], scenarios: Sequence[Scenario]
) -> list[ReportInput]:
    """Every scenario report the run produced, labelled with model, scenario, run and category."""
    inputs = []
    for model in models:
        for scenario in scenarios:
            for run in range(1, scenario.runs + 1):
                path = (
                    layout.report_dir(model.slug, scenario.id, run, error=scenario.is_error)
                    / _REPORT
                )
                if path.is_file():
                    inputs.append(
                        ReportInput(path, model.slug, scenario.id, f"run_{run}", scenario.category)
                    )
    return inputs


def package_run(
    config: SuiteConfig,
    layout: RunLayout,
    models: Sequence[SuiteModel],
    scenarios: Sequence[Scenario],
    summaries: Sequence[Path],
    invocation: Sequence[str],
) -> PackOutcome:
    """Build, sign and strictly verify the run's pack (pinned to the signer it was built with)."""
    key_path, generated = (None, False) if not config.sign else signing_key_path(config, layout)
    target = Path(config.pack_dir) if config.pack_dir else layout.default_pack
    metadata: dict[str, Path] = {"scenarios": layout.scenarios, "models": layout.models}
    if layout.revisions.is_file():
        metadata["model_revisions"] = layout.revisions
    built = build_pack(
        target,
        final_verdict=layout.reports / "final_verdict.json",
        reports=pack_reports(layout, models, scenarios),
        signing_key=key_path,
        metadata=metadata,
        summaries=[p for p in summaries if p.suffix == ".json" and p.name != "final_verdict.json"],
        config_source=layout.config,
        invocation=invocation,
        require_pass=config.require_pass,
        release_review=config.release_review,
        html=not config.skip_html,
        overwrite=True,
    )
    pinned = fingerprint(load_private_key(key_path).public_key()) if key_path else None
    verification = verify_pack(
        built.path, strict=True, expected_fingerprint=pinned, use_default_trust_store=False
    )
    return PackOutcome(built, verification, generated)
