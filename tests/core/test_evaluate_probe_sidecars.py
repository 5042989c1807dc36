"""Probe sidecars written by ``evaluate``: the ProbingGuard capability, records and failure paths.

Runs :func:`invarlock_core.evaluation.evaluate` in-process on a tiny real GPT-2 whose subject
directory carries an ``edit_metadata.json`` that asks for a probe (``detection.probe``), with
throwaway guards registered into hand-built registries; the choice of guard and the refusals are
also checked on :func:`~invarlock_core.evaluation.probe_sidecars.run_probe` directly. The built-in RMT and
variance probes are tested through real injections in ``tests/guards/test_injection_probes.py``.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from invarlock_core.canonical import canonical_json, file_sha256
from invarlock_core.datasets.builtin import builtin_providers
from invarlock_core.evaluation import EvaluationOutcome, EvaluationRequest, evaluate
from invarlock_core.evaluation.probe_sidecars import (
    ChainRun,
    ProbeRequest,
    requested_probe,
    run_probe,
)
from invarlock_core.guarding import (
    GuardChain,
    GuardContext,
    GuardResult,
    ModelUnderTest,
    ProbingGuard,
)
from invarlock_core.plugins import Registries
from invarlock_core.report.verification import verify_report_file
from invarlock_core.schema_validation import schema_errors

pytestmark = pytest.mark.slow

QUICK: dict[str, Any] = {"seq_len": 64, "preview_windows": 2, "final_windows": 6, "device": "cpu"}


@attrs.define
class FakeProbingGuard:
    """Probes by returning ``document(...)``; records what the probe was given."""

    name: str = "rmt"
    summary: str = "a probing guard for tests"
    document: Callable[[Any, GuardResult | None], Any] = lambda state, validated: {
        "kind": "fake_probe",
        "schema_version": 1,
        "state": state,
        "windows": None if validated is None else validated.metrics["windows"],
        "not_a_number": math.nan,
    }
    crash_on_validate: bool = False
    prepare_calls: int = 0

    def prepare(self, baseline: ModelUnderTest, context: GuardContext) -> Any:
        self.prepare_calls += 1
        return {"prepared": self.prepare_calls}

    def validate(
        self, subject: ModelUnderTest, baseline_state: Any, context: GuardContext
    ) -> GuardResult:
        if self.crash_on_validate:
            raise RuntimeError("singular matrix")
        return GuardResult(self.name, True, "pass", metrics={"windows": len(subject.calibration)})

    def probe(
        self,
        subject: ModelUnderTest,
        baseline_state: Any,
        context: GuardContext,
        validated: GuardResult | None = None,
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.document(baseline_state, validated)
        return result


@attrs.frozen
class PlainGuard:
    name: str = "variance"
    summary: str = "validates, cannot probe"

    def prepare(self, baseline: ModelUnderTest, context: GuardContext) -> Any:
        return None

    def validate(
        self, subject: ModelUnderTest, baseline_state: Any, context: GuardContext
    ) -> GuardResult:
        return GuardResult(self.name, True, "pass")


def _registries(*guards: Any) -> Registries:
    registries = Registries()
    for provider in builtin_providers():
        registries.datasets.add(provider, plugin="test")
    for guard in guards:
        registries.guards.add(guard, plugin="test")
    return registries


@pytest.fixture(scope="module")
def baseline(tiny_model_dir: Callable[[str], Path]) -> Path:
    return tiny_model_dir("gpt2")


def _subject(tmp_path: Path, baseline: Path, detection: dict[str, Any] | None) -> Path:
    """A copy of the baseline whose edit metadata asks for ``detection``."""
    subject = tmp_path / "subject"
    if not subject.exists():
        shutil.copytree(baseline, subject)
    metadata = {
        "schema": "invarlock/evidence-pack-edit-metadata-v1",
        "scenario_id": "fake_injection",
        "detection": detection,
    }
    (subject / "edit_metadata.json").write_text(json.dumps(metadata), encoding="utf-8")
    return subject


def _run(
    tmp_path: Path,
    baseline: Path,
    plugins: tuple[Any, ...],
    detection: dict[str, Any] | None,
    order: tuple[str, ...] = ("rmt",),
) -> EvaluationOutcome:
    """Evaluate the baseline against its copy with guard ``plugins`` installed, running ``order``."""
    return evaluate(
        EvaluationRequest(
            baseline=baseline,
            subject=_subject(tmp_path, baseline, detection),
            out=tmp_path / "out",
            guards=order,
            **QUICK,
        ),
        registries=_registries(*plugins),
    )


def _leftovers(out: Path) -> list[str]:
    """Temporary or staging files an interrupted write would leave behind."""
    return sorted(p.name for p in out.iterdir() if p.name.startswith("."))


RMT_PROBE = {"requirement": "informational", "guards": ["rmt"], "probe": "rmt_probe.json"}


@pytest.fixture(scope="module")
def written(
    baseline: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[EvaluationOutcome, int]:
    """One evaluation whose probing guard wrote ``rmt_probe.json``, and its prepare count."""
    guard = FakeProbingGuard()
    outcome = _run(tmp_path_factory.mktemp("written"), baseline, (guard,), RMT_PROBE)
    return outcome, guard.prepare_calls


def test_fake_guard_satisfies_the_capability_and_a_plain_guard_does_not() -> None:
    assert isinstance(FakeProbingGuard(), ProbingGuard)
    assert not isinstance(PlainGuard(), ProbingGuard)


def test_sidecar_is_canonical_json_beside_the_report_and_the_report_seals_its_digest(
    written: tuple[EvaluationOutcome, int],
) -> None:
    outcome, prepare_calls = written
    out = outcome.report_path.parent
    sidecar = out / "rmt_probe.json"
    data = sidecar.read_bytes()
    document = json.loads(data)
    assert data == canonical_json(document)
    # the chain's cached baseline state and its own result were reused: one prepare, no re-measure
    assert document == {
        "kind": "fake_probe",
        "schema_version": 1,
        "state": {"prepared": 1},
        "windows": 2,
        "not_a_number": None,
    }
    assert prepare_calls == 1
    assert outcome.report["probe"] == {
        "file": "rmt_probe.json",
        "guards": ["rmt"],
        "guard": "rmt",
        "status": "written",
        "reason": None,
        "kind": "fake_probe",
        "sha256": f"sha256:{file_sha256(sidecar)}",
    }
    assert outcome.report["timings"]["probe_s"] >= 0.0
    assert _leftovers(out) == []
    verified = verify_report_file(outcome.report_path)
    assert verified.ok, verified.problems
    assert "sidecars" in [c.name for c in verified.checks]


def test_a_tampered_sidecar_fails_report_verification(
    written: tuple[EvaluationOutcome, int], tmp_path: Path
) -> None:
    out = Path(shutil.copytree(written[0].report_path.parent, tmp_path / "copy"))
    sidecar = out / "rmt_probe.json"
    sidecar.write_bytes(sidecar.read_bytes().replace(b'"windows":2', b'"windows":3'))
    verified = verify_report_file(out / "evaluation.report.json")
    assert not verified.ok
    assert verified.exit_code == 1
    assert verified.problems == (
        "probe sidecar rmt_probe.json differs from the sha256 the report records",
    )
    sidecar.unlink()  # an absent sidecar is not checked: the report stands on its own
    assert verify_report_file(out / "evaluation.report.json").ok


def test_reports_written_before_probes_existed_still_match_the_schema(
    written: tuple[EvaluationOutcome, int],
) -> None:
    report = written[0].report
    assert (
        schema_errors({k: v for k, v in report.items() if k != "probe"}, "evaluation-report") == []
    )
    unsealed = {**report["probe"], "sha256": None}
    assert schema_errors({**report, "probe": unsealed}, "evaluation-report") != []


def _boom(state: Any, validated: GuardResult | None) -> Any:
    raise ValueError("probe exploded\nsecond line")


def test_a_raising_probe_is_recorded_leaves_no_file_and_removes_a_stale_one(
    baseline: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "rmt_probe.json").write_text("{}")  # stale, from an earlier evaluation
    outcome = _run(tmp_path, baseline, (FakeProbingGuard(document=_boom),), RMT_PROBE)
    assert outcome.verdict == "PASS"
    record = outcome.report["probe"]
    assert (record["status"], record["guard"], record["sha256"]) == ("failed", "rmt", None)
    assert record["reason"] == "probe raised ValueError: probe exploded"
    assert not (out / "rmt_probe.json").exists()
    assert _leftovers(out) == []
    assert verify_report_file(outcome.report_path).ok


def test_a_guard_that_crashed_on_the_subject_is_not_asked_to_probe(
    baseline: Path, tmp_path: Path
) -> None:
    outcome = _run(tmp_path, baseline, (FakeProbingGuard(crash_on_validate=True),), RMT_PROBE)
    assert outcome.verdict == "FAIL"
    record = outcome.report["probe"]
    assert (record["status"], record["reason"]) == ("skipped", "guard rmt crashed on the subject")
    assert not (tmp_path / "out" / "rmt_probe.json").exists()


def test_a_probing_guard_left_out_of_the_chain_writes_nothing(
    baseline: Path, tmp_path: Path
) -> None:
    plugins = (FakeProbingGuard(), PlainGuard())
    outcome = _run(tmp_path, baseline, plugins, RMT_PROBE, ("variance",))
    record = outcome.report["probe"]
    assert (record["status"], record["guard"]) == ("skipped", None)
    assert record["reason"] == "guard rmt is not in the guard chain"
    assert not (tmp_path / "out" / "rmt_probe.json").exists()
    assert verify_report_file(outcome.report_path).ok


def test_no_probe_requested_records_null_and_removes_a_stale_sidecar(
    baseline: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "ve_probe.json").write_text("{}")
    (out / "notes.json").write_text("{}")
    outcome = _run(tmp_path, baseline, (FakeProbingGuard(),), None)
    assert outcome.report["probe"] is None
    assert not (out / "ve_probe.json").exists()
    assert (out / "notes.json").exists()


def test_a_probe_name_that_escapes_the_report_directory_is_refused(
    baseline: Path, tmp_path: Path
) -> None:
    detection = {**RMT_PROBE, "probe": "../escaped_probe.json"}
    outcome = _run(tmp_path, baseline, (FakeProbingGuard(),), detection)
    record = outcome.report["probe"]
    assert record["status"] == "skipped"
    assert (
        record["reason"]
        == "probe file name '../escaped_probe.json' is not a plain *_probe.json name"
    )
    assert not (tmp_path / "escaped_probe.json").exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "evaluate_timing.json",
        "evaluation.report.json",
        "evaluation_report.md",
        "runtime.manifest.json",
    ]


def _direct(
    tmp_path: Path, request: ProbeRequest, plugins: tuple[Any, ...], order: tuple[str, ...]
) -> dict[str, Any]:
    """``run_probe`` on a real chain whose guards never touch the (absent) models."""
    registry = _registries(*plugins).guards
    baseline = ModelUnderTest("baseline", None, tmp_path, "sha256:b")
    subject = ModelUnderTest("subject", None, tmp_path, "sha256:s")
    results = {n: registry.get(n).validate(subject, None, GuardContext()) for n in order}
    run = ChainRun(GuardChain(registry, order), {}, baseline, subject, results)
    return run_probe(request, run, out=tmp_path)


@pytest.mark.parametrize(
    ("plugins", "order", "named", "reason"),
    [
        ((PlainGuard(),), ("variance",), ("rmt",), "guard rmt is not installed"),
        ((PlainGuard(),), ("variance",), ("variance",), "guard variance cannot probe"),
        (
            (PlainGuard(),),
            ("variance",),
            ("primary_metric", "variance"),
            "guard primary_metric is not installed; guard variance cannot probe",
        ),
        ((PlainGuard(),), ("variance",), (), "no guard is named"),
    ],
)
def test_guards_that_cannot_probe_are_skipped_with_every_reason(
    tmp_path: Path,
    plugins: tuple[Any, ...],
    order: tuple[str, ...],
    named: tuple[str, ...],
    reason: str,
) -> None:
    record = _direct(tmp_path, ProbeRequest("rmt_probe.json", named), plugins, order)
    assert (record["status"], record["guard"], record["reason"]) == ("skipped", None, reason)
    assert record["guards"] == list(named)
    assert list(tmp_path.iterdir()) == []


def test_the_first_named_guard_that_can_probe_writes_the_sidecar(tmp_path: Path) -> None:
    request = ProbeRequest("rmt_probe.json", ("spectral", "variance", "rmt"))
    record = _direct(tmp_path, request, (PlainGuard(), FakeProbingGuard()), ("variance", "rmt"))
    assert (record["status"], record["guard"], record["kind"]) == ("written", "rmt", "fake_probe")
    assert [p.name for p in tmp_path.iterdir()] == ["rmt_probe.json"]


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"schema_version": 1}, "$: 'kind' is a required property"),
        (["not", "an", "object"], "$: ['not', 'an', 'object'] is not of type 'object'"),
        (
            {"kind": "Bad Kind", "schema_version": 1},
            "$.kind: 'Bad Kind' does not match '^[a-z0-9_]+$'",
        ),
    ],
)
def test_a_probe_that_is_not_a_probe_document_fails_and_writes_nothing(
    tmp_path: Path, document: Any, reason: str
) -> None:
    guard = FakeProbingGuard(document=lambda state, validated: document)
    record = _direct(tmp_path, ProbeRequest("rmt_probe.json", ("rmt",)), (guard,), ("rmt",))
    assert (record["status"], record["guard"]) == ("failed", "rmt")
    assert record["reason"] == f"probe document does not match schema probe-sidecar: {reason}"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "name",
    [
        "sub/rmt_probe.json",
        "evaluation.report.json",
        ".x_probe.json",
        "rmt_probe.json.tmp",
        "_probe.json",
    ],
)
def test_only_plain_probe_file_names_are_accepted(tmp_path: Path, name: str) -> None:
    record = _direct(tmp_path, ProbeRequest(name, ("rmt",)), (FakeProbingGuard(),), ("rmt",))
    assert (record["status"], record["guard"]) == ("skipped", None)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        (None, None),
        ({"detection": None}, None),
        ({"detection": {"guards": ["rmt"], "probe": None}}, None),
        (
            {"detection": {"guards": ["rmt"], "probe": "rmt_probe.json"}},
            ("rmt_probe.json", ("rmt",)),
        ),
        ({"detection": {"probe": "ve_probe.json"}}, ("ve_probe.json", ())),
    ],
)
def test_requested_probe_reads_detection(
    metadata: dict[str, Any] | None, expected: tuple[str, tuple[str, ...]] | None
) -> None:
    request = requested_probe(metadata)
    assert (None if request is None else (request.file, request.guards)) == expected
