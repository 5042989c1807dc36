"""``veriscope report / override / calibrate / diff / presets / metrics`` on real capsules."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from veriscope_gate.capsule import MANUAL, RESULTS, SUMMARY
from veriscope_gate.cli import main
from veriscope_gate.governance import GOVERNANCE_LOG
from veriscope_gate.validate import validate_capsule

Factory = Callable[..., Path]


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_markdown_report_follows_the_golden_skeleton(capsule_factory: Factory, capsys: pytest.CaptureFixture[str]) -> None:
    out = capsule_factory("report", shift_at=401)
    code, text, _ = _run(capsys, "report", str(out), "--format", "md")
    assert code == 0
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert headings == [f"# Veriscope Report: `{out}`", "## Gate Summary", "## False Alarm Rate (control)",
                        "## Overhead", "## Artifacts", "## Governance summary"]
    for field in ("Run ID", "Status", "Wrapper Exit", "Runner Exit", "gate_preset", "Started", "Ended",
                  "Window Signature"):
        assert re.search(rf"^\| {field} \| .+ \|$", text, re.M), field
    assert "| Total checks | Evaluated | SKIP | WARN | FAIL |" in text
    assert "**Final decision: FAIL (first FAIL at iter" in text
    assert "| Detailed results | `results.json` |" in text  # OUTDIR-relative paths
    assert str(out) + "/" not in text.split("## Artifacts")[1]


def test_text_is_the_default_format(capsule_factory: Factory, capsys: pytest.CaptureFixture[str]) -> None:
    out = capsule_factory("text")
    code, text, _ = _run(capsys, "report", str(out))
    assert code == 0
    assert text.startswith(f"Veriscope Report: {out}")
    assert "Gate Summary" in text
    assert "#" not in text.splitlines()[0]


def test_html_report_is_self_contained_with_an_svg_plot(capsule_factory: Factory, capsys: pytest.CaptureFixture[str],
                                                        tmp_path: Path) -> None:
    out = capsule_factory("html", shift_at=401)
    page = tmp_path / "r.html"
    code, _, _ = _run(capsys, "report", str(out), "--format", "html", "--output", str(page))
    assert code == 0
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert "<svg" in html
    assert 'class="worst-dw"' in html
    assert 'class="eps-eff"' in html
    assert 'class="decision-fail"' in html
    assert 'class="decision-pass"' in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")  # no external resources
    assert "<script" not in html


def test_report_of_missing_artifacts_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "report", str(tmp_path))
    assert code == 2
    assert err.startswith("error: ")
    assert err.count("\n") == 1


def test_override_is_an_overlay(capsule_factory: Factory, capsys: pytest.CaptureFixture[str]) -> None:
    out = capsule_factory("override", shift_at=401)
    raw = (out / RESULTS).read_bytes(), (out / SUMMARY).read_bytes()
    code, _, _ = _run(capsys, "override", str(out), "--status", "pass", "--reason", "known flaky shift",
                      "--reviewer", "Ada", "--ts-utc", "2026-01-15T10:00:00Z")
    assert code == 0
    assert ((out / RESULTS).read_bytes(), (out / SUMMARY).read_bytes()) == raw
    judgement = json.loads((out / MANUAL).read_text())
    assert judgement["status"] == "pass"
    assert judgement["reviewer"] == "Ada"
    events = [json.loads(line)["event"] for line in (out / GOVERNANCE_LOG).read_text().splitlines()]
    assert events[-1] == "manual_override_v1"
    assert validate_capsule(out, strict_governance=True).ok
    _, text, _ = _run(capsys, "report", str(out), "--format", "md")
    assert text.index("## Manual Judgement") < text.index("## Gate Summary")
    assert "Status: PASS (operator overlay" in text


@pytest.mark.parametrize(("args", "message"), [
    (["--status", "pass", "--reason", "  "], "--reason must not be empty"),
    (["--status", "pass", "--reason", "x", "--ts-utc", "noon"], "--ts-utc must be"),
    (["--status", "maybe", "--reason", "x"], "invalid choice"),
])
def test_override_bad_input(capsule_factory: Factory, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    out = capsule_factory("override-bad")
    code, _, err = _run(capsys, "override", str(out), *args)
    assert code == 2
    assert message in err
    assert not (out / MANUAL).exists()


def test_calibrate_is_deterministic_and_read_only(capsule_factory: Factory, capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    control = capsule_factory("control")
    injected = capsule_factory("injected", shift_at=401)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in injected.iterdir())
    code, _, _ = _run(capsys, "calibrate", "--control-dir", str(control), "--injected-dir", str(injected),
                      "--onset", "401")
    assert code == 0
    first = (tmp_path / "calibration.json").read_text()
    data = json.loads(first)
    assert data["W"] == 40
    assert data["K"] == 200
    assert data["FAR"] == 0.0
    assert data["Delay_W"] == pytest.approx((440 - 401) / 40)
    assert data["missing_fields"] == []
    assert data["overhead"] is not None
    # a synthetic run spends nearly all its time in the gate, so only FAR and delay pass here
    assert data["calibration_status"] == ("pass" if data["overhead"] <= 0.05 else "fail")
    assert "Delay_W" in (tmp_path / "calibration.md").read_text()
    _run(capsys, "calibrate", "--control-dir", str(control), "--injected-dir", str(injected), "--onset", "401")
    assert (tmp_path / "calibration.json").read_text() == first
    assert sorted(p.name for p in injected.iterdir()) == before
    code, _, err = _run(capsys, "calibrate", "--control-dir", str(tmp_path / "none"), "--injected-dir", str(injected))
    assert code == 2
    assert "is not a directory" in err


def test_calibrate_without_onset_is_incomplete(capsule_factory: Factory, capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    control = capsule_factory("c2")
    out = tmp_path / "cal.json"
    code, _, _ = _run(capsys, "calibrate", "--control-dir", str(control), "--injected-dir", str(control),
                      "--out", str(out), "--out-md", str(tmp_path / "cal.md"))
    assert code == 0
    data = json.loads(out.read_text())
    assert data["calibration_status"] == "incomplete"
    assert "onset" in data["missing_fields"]


def test_diff_and_compare(capsule_factory: Factory, capsys: pytest.CaptureFixture[str]) -> None:
    a = capsule_factory("a")
    b = capsule_factory("b", shift_at=401)
    code, text, _ = _run(capsys, "diff", str(a), str(b))
    assert code == 0
    assert "window signature: identical" in text
    assert "decision changes:" in text
    code, text, _ = _run(capsys, "report", "--compare", str(a), str(b), "--format", "json")
    assert code == 0
    runs = json.loads(text)["runs"]
    assert [r["final_decision"] for r in runs] == ["pass", "fail"]
    code, text, _ = _run(capsys, "report", "--compare", str(a), str(b), "--format", "md")
    assert code == 0
    assert text.startswith("# Veriscope Compare")


def test_compare_rejects_incompatible_partial_and_ungoverned(capsule_factory: Factory,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    a = capsule_factory("ca")
    other = capsule_factory("cb", preset="persistence_v0", iters=1200)
    code, _, err = _run(capsys, "report", "--compare", str(a), str(other))
    assert code == 2
    assert "window signature differs" in err
    code, text, _ = _run(capsys, "report", "--compare", str(a), str(other), "--allow-incompatible",
                         "--allow-gate-preset-mismatch")
    assert code == 0
    assert "INCOMPATIBLE" in text
    code, _, _ = _run(capsys, "diff", str(a), str(other))
    assert code == 2
    partial = capsule_factory("cp", partial=True)
    code, _, err = _run(capsys, "diff", str(a), str(partial))
    assert code == 2
    assert "partial capsule" in err
    ungoverned = capsule_factory("cg")
    (ungoverned / GOVERNANCE_LOG).unlink()
    code, _, err = _run(capsys, "report", "--compare", str(a), str(ungoverned))
    assert code == 2
    assert "governance" in err


def test_presets_and_metrics_listings(capsys: pytest.CaptureFixture[str]) -> None:
    code, text, _ = _run(capsys, "presets", "--json")
    assert code == 0
    assert json.loads(text)["tuned_v0"]["controls"]["gate_window"] == 100
    code, text, _ = _run(capsys, "metrics")
    assert code == 0
    assert [line.split()[0] for line in text.splitlines()] == ["cos_disp", "eff_dim", "rankme", "var_out_k"]


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _run(capsys, "report", "--compare", str(tmp_path))
    assert code == 2
    assert err.count("\n") == 1
    code, _, err = _run(capsys, "validate", str(tmp_path), "--", "x")
    assert code == 2
    assert "only accepted by veriscope run" in err
    code, _, err = _run(capsys, "run", "gpt", "--outdir", str(tmp_path / "o"), "--gate-preset", "nope")
    assert code == 2
    assert "unknown gate preset" in err
    assert not (tmp_path / "o").exists()


BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers"):
            raise ImportError(f"{name} is blocked in this test")
        return None
sys.meta_path.insert(0, Block())
from veriscope_gate.cli import main
codes = [main(["validate", sys.argv[1]]), main(["report", sys.argv[1], "--format", "html", "-o", sys.argv[2]]),
         main(["diff", sys.argv[1], sys.argv[1]])]
print(codes, sorted(m for m in ("torch", "transformers") if m in sys.modules))
"""


def test_validate_report_diff_work_without_torch(capsule_factory: Factory, tmp_path: Path) -> None:
    import subprocess
    import sys

    out = capsule_factory("notorch", shift_at=401)
    proc = subprocess.run([sys.executable, "-c", BLOCK_TORCH, str(out), str(tmp_path / "r.html")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.stdout.strip().splitlines()[-1] == "[0, 0, 0] []", proc.stderr
