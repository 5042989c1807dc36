"""Properties of the pure verdict rules (``verdict_rules.decide``) over generated outcomes."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from invarlock_packs.verdict_rules import KINDS, RunObservation, ScenarioRule, decide

RULES = tuple(ScenarioRule(id=f"s_{kind}", kind=kind, runs=3, category=kind) for kind in KINDS)
verdicts = st.lists(st.sampled_from(["PASS", "FAIL"]), min_size=0, max_size=4)


def _observations(model: str, outcomes: dict[str, list[str]]) -> list[RunObservation]:
    return [
        RunObservation(
            model=model,
            scenario_id=f"s_{kind}",
            where=f"{model}/{kind}/{index}",
            verdict=verdict,
            category=kind,
        )
        for kind, runs in outcomes.items()
        for index, verdict in enumerate(runs)
    ]


def _fraction_ok(runs: list[str], threshold: float) -> bool:
    return not runs or runs.count("FAIL") / len(runs) >= threshold


@given(
    outcomes=st.fixed_dictionaries({kind: verdicts for kind in KINDS}),
    threshold=st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]),
    order=st.randoms(use_true_random=False),
)
def test_the_verdict_is_the_conjunction_of_the_criteria(
    outcomes: dict[str, list[str]], threshold: float, order: random.Random
) -> None:
    observations = _observations("m", outcomes)
    order.shuffle(observations)
    verdict = decide(RULES, observations, ["m"], informational_min_fraction=threshold)
    errors_must_detect = outcomes["error_must_detect"]
    expected = {
        "clean_all_pass": all(v == "PASS" for v in outcomes["clean"]),
        "stress_required_fail": all(v == "FAIL" for v in outcomes["stress_required_fail"]),
        # One report per model for error kinds: extra reports are extra, never a substitute.
        "error_injection_detected": all(v == "FAIL" for v in errors_must_detect),
        "informational_stress_met": _fraction_ok(outcomes["stress_informational"], threshold),
        "informational_errors_met": _fraction_ok(outcomes["error_informational"], threshold),
        "reports_complete": all(
            len(runs) >= (1 if kind.startswith("error_") else 3) for kind, runs in outcomes.items()
        ),
    }
    for name, value in expected.items():
        assert getattr(verdict.criteria, name) is value, name
    assert verdict.verdict == ("PASS" if all(expected.values()) else "FAIL")
    assert (verdict.verdict == "PASS") == (verdict.failed_requirements == ())
    assert verdict.counts.reports == len(observations)


@given(st.lists(st.sampled_from(["PASS", "FAIL"]), min_size=1, max_size=3))
def test_every_failed_requirement_names_its_criterion_and_report(runs: list[str]) -> None:
    observations = _observations("m", {"clean": runs})
    verdict = decide(RULES[:1], observations, ["m"])
    failing = [o.where for o in observations if o.verdict == "FAIL"]
    named = [r for r in verdict.failed_requirements if r.startswith("clean_all_pass: ")]
    assert len(named) == len(failing)
    for where, text in zip(failing, named):
        assert where in text


def test_reports_the_manifest_does_not_explain_break_consistency() -> None:
    stray = RunObservation("other", "s_clean", "other/x", "PASS", "clean")
    verdict = decide(RULES[:1], [stray], ["m"])
    assert not verdict.criteria.categories_consistent
    assert (
        "other/s_clean: reports for a scenario or model the manifest does not list"
        in (verdict.failed_requirements[-1])
    )
