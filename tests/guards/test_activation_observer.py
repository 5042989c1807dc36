"""The RMT and variance guards take their activation probe from the evaluation's own scoring pass.

``invarlock evaluate`` scores the calibration windows anyway (they are its first preview
windows); the guards' :class:`~invarlock_guards.activation_probe.ActivationObserver` hooks that pass
instead of running a second one. Its measurement must equal the stand-alone probe's, it must step
aside (and the guards measure themselves) when the scoring batches do not match, and it must
leave no hook behind.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest
import torch

import invarlock_guards.activation_probe as activation_probe
from invarlock_core.evaluation import EvaluationOutcome, EvaluationRequest, evaluate
from invarlock_core.guarding import GuardChain, GuardContext, ModelUnderTest
from invarlock_core.models import load_model
from invarlock_core.plugins import Registries, get_registries
from invarlock_guards.activation_grams import GramQueue
from invarlock_guards.rmt import RMTGuard

pytestmark = pytest.mark.slow

QUICK: dict[str, Any] = {"device": "cpu", "seq_len": 64, "preview_windows": 8, "final_windows": 8}


@pytest.fixture(scope="module")
def registries() -> Registries:
    return get_registries()


@pytest.fixture
def own_passes(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records every pass the guards run themselves (``True`` for a scaled A/B pass)."""
    calls: list[bool] = []
    original = activation_probe._run

    def counting(mut: ModelUnderTest, **kwargs: Any) -> Any:
        calls.append(kwargs.get("scales") is not None)
        return original(mut, **kwargs)

    monkeypatch.setattr(activation_probe, "_run", counting)
    return calls


def _evaluate(registries: Registries, baseline: Path, out: Path, **extra: Any) -> EvaluationOutcome:
    request = EvaluationRequest(
        baseline=baseline, edit="gaussian_noise", out=out, **{**QUICK, **extra}
    )
    return evaluate(request, registries=registries)


def _guard(outcome: EvaluationOutcome, name: str) -> dict[str, Any]:
    (result,) = [g for g in outcome.report["guards"] if g["name"] == name]
    return dict(result)


def test_observed_probe_equals_the_guards_own_pass(
    registries: Registries,
    tiny_model_dir: Callable[[str], Path],
    tmp_path: Path,
    own_passes: list[bool],
) -> None:
    baseline = tiny_model_dir("gpt2")
    observed = _evaluate(registries, baseline, tmp_path / "observed")
    assert [scaled for scaled in own_passes if not scaled] == []  # both probes came from scoring
    # Scoring batches of 4 never match the probe's batch of 8 calibration windows: the observer
    # steps aside and the guards run their own passes, one per model.
    own_passes.clear()
    measured = _evaluate(registries, baseline, tmp_path / "measured", batch_size=4)
    assert [scaled for scaled in own_passes if not scaled] == [False, False]
    for name in ("rmt", "variance"):
        a, b = _guard(observed, name), _guard(measured, name)
        assert a["passed"] == b["passed"]
        assert _close(a, b)
    rmt_a = {row["module"]: row for row in _guard(observed, "rmt")["details"]["top_modules"]}
    rmt_b = {row["module"]: row for row in _guard(measured, "rmt")["details"]["top_modules"]}
    assert rmt_a.keys() == rmt_b.keys()
    for module, row in rmt_a.items():
        assert row["baseline"] == pytest.approx(rmt_b[module]["baseline"], rel=1e-5)
        assert row["subject"] == pytest.approx(rmt_b[module]["subject"], rel=1e-5)
    # The observers' time is reported with the guards, not with the scoring.
    timings = observed.report["timings"]
    assert timings["baseline"]["guards_prepare_s"] > 0.0
    assert timings["subject"]["guards_validate_s"] > 0.0


def _close(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Nested metrics equal up to float noise (family tables hold floats and ints)."""

    def flat(value: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                out.update(flat(item, f"{prefix}.{key}"))
            return out
        return {prefix: value}

    fa, fb = flat(a["metrics"]), flat(b["metrics"])
    return fa.keys() == fb.keys() and all(
        fa[k] == pytest.approx(fb[k], rel=1e-5) if isinstance(fa[k], float) else fa[k] == fb[k]
        for k in fa
    )


def _hook_count(model: Any) -> int:
    return sum(len(module._forward_hooks) for module in model.modules())


def test_observer_removes_its_hooks_and_steps_aside_on_foreign_batches(
    registries: Registries, tiny_model_dir: Callable[[str], Path]
) -> None:
    loaded = load_model(tiny_model_dir("llama"), device="cpu")
    generator = torch.Generator().manual_seed(0)
    calibration = [torch.randint(0, 200, (1, 32), generator=generator) for _ in range(8)]
    mut = ModelUnderTest("subject", loaded.model, loaded.path, loaded.digest, calibration)
    chain = GuardChain(registries.guards, ("rmt", "variance"))
    (observer,) = chain.observers(mut, {})  # the RMT and variance guards share one observer
    assert _hook_count(loaded.model) > 0
    foreign = torch.randint(0, 200, (8, 32), generator=generator)
    with torch.no_grad():
        observer.begin_batch(foreign)  # not the calibration batch: the observer steps aside
        loaded.model(input_ids=foreign)
    observer.end_batch(foreign, [0.0] * 8)
    assert _hook_count(loaded.model) == 0
    observer.finish()
    assert 0 not in activation_probe._CACHE.get(mut, {})  # nothing cached: guards measure alone

    mut2 = ModelUnderTest("subject", loaded.model, loaded.path, loaded.digest, calibration)
    (observer,) = chain.observers(mut2, {})
    batch = torch.cat(calibration)
    with torch.no_grad():
        observer.begin_batch(batch)
        loaded.model(input_ids=batch)
    observer.end_batch(batch, [1.0] * 8)
    assert _hook_count(loaded.model) == 0  # removed as soon as the last calibration batch ended
    observer.finish()
    probe = activation_probe._CACHE[mut2][0]
    assert probe.windows == 8
    assert probe.window_nll == (1.0,) * 8
    assert chain.observers(mut2, {}) == []  # already measured: no second observer
    reference = activation_probe._run(mut2, seed=0, scales=None, want_rmt=True)
    for name, ratio in reference.rmt.items():
        assert probe.rmt[name].ratio == pytest.approx(ratio.ratio, rel=1e-5)


def test_cached_baseline_states_ask_for_no_observer(
    registries: Registries, tiny_model_dir: Callable[[str], Path]
) -> None:
    loaded = load_model(tiny_model_dir("gpt2"), device="cpu")
    calibration = [torch.zeros(1, 16, dtype=torch.long)]
    baseline = ModelUnderTest("baseline", loaded.model, loaded.path, loaded.digest, calibration)
    chain = GuardChain(registries.guards, ("invariants", "rmt"))
    contexts = {"rmt": GuardContext()}
    (observer,) = chain.observers(baseline, contexts)
    chain.baseline_state("rmt", baseline, contexts["rmt"])  # its own pass: the observer ignores it
    observer.finish()
    assert _hook_count(loaded.model) == 0
    again = ModelUnderTest("baseline", loaded.model, loaded.path, loaded.digest, calibration)
    assert chain.observers(again, contexts) == []  # same digest and context: state is cached


@pytest.mark.parametrize("step", ["add_output", "add_linear", "close_batch"])
def test_a_failing_hook_never_breaks_the_scoring_pass(
    registries: Registries,
    tiny_model_dir: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
    step: str,
) -> None:
    loaded = load_model(tiny_model_dir("gpt2"), device="cpu")
    calibration = [torch.randint(0, 200, (1, 16), generator=torch.Generator().manual_seed(1))]
    mut = ModelUnderTest("subject", loaded.model, loaded.path, loaded.digest, calibration)

    def broken(*_args: Any) -> None:
        raise RuntimeError("eigensolver exploded")

    monkeypatch.setattr(GramQueue, step, broken)
    (observer,) = GuardChain(registries.guards, ("rmt",)).observers(mut, {})
    batch = torch.cat(calibration)
    with torch.no_grad():
        observer.begin_batch(batch)
        logits = loaded.model(input_ids=batch).logits  # the scoring pass goes through
    observer.end_batch(batch, [0.5])
    observer.finish()
    assert logits.shape[0] == 1
    assert 0 not in activation_probe._CACHE.get(mut, {})  # nothing cached from a broken pass
    assert _hook_count(loaded.model) == 0
    # The guard then measures on its own, where the error is its own (a FAIL in the chain).
    with pytest.raises(RuntimeError, match="eigensolver exploded"):
        activation_probe.probe_activations(mut, seed=0)
    assert _hook_count(loaded.model) == 0


def test_probes_are_solved_when_first_read_or_together(
    tiny_model_dir: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe's RMT ratios are solved when first read, or together with other probes of its
    seed by ``solve`` (the RMT guard's baseline and subject: one set of solves); a probe too
    large to keep its problems waiting is solved at once."""
    solves: list[int] = []
    original = GramQueue.solve

    def counting(queue: GramQueue, *others: GramQueue) -> None:
        solves.append(1 + len(others))
        original(queue, *others)

    monkeypatch.setattr(GramQueue, "solve", counting)
    loaded = load_model(tiny_model_dir("gpt2"), device="cpu")
    calibration = [torch.randint(0, 200, (1, 16), generator=torch.Generator().manual_seed(4))]

    def probe(role: Literal["baseline", "subject"], seed: int) -> Any:
        mut = ModelUnderTest(role, loaded.model, loaded.path, loaded.digest, calibration)
        return activation_probe.probe_activations(mut, seed=seed)

    baseline, subject, other = probe("baseline", 0), probe("subject", 0), probe("subject", 1)
    assert solves == []
    subject.solve(baseline, other, subject)
    assert solves == [2, 1]  # the two seed-0 probes together; seed 1 on its own
    ratios = dict(subject.rmt)
    assert ratios
    assert baseline.rmt.keys() == other.rmt.keys() == ratios.keys()
    for name, ratio in baseline.rmt.items():
        assert ratio.ratio == pytest.approx(ratios[name].ratio, rel=1e-6)  # the same model
    assert baseline.nonfinite_outputs == subject.nonfinite_outputs == ()
    subject.solve(baseline)
    assert solves == [2, 1]  # solved once
    alone = probe("subject", 2)
    assert alone.rmt.keys() == ratios.keys()  # first read: solved on its own
    assert solves == [2, 1, 1]
    guard, context = RMTGuard(), GuardContext(seed=4)
    state = guard.prepare(
        ModelUnderTest("baseline", loaded.model, loaded.path, loaded.digest, calibration), context
    )
    result = guard.validate(
        ModelUnderTest("subject", loaded.model, loaded.path, "s", calibration), state, context
    )
    assert result.passed
    assert solves == [2, 1, 1, 2]  # the guard solves its baseline and subject together
    monkeypatch.setattr(activation_probe, "_DEFER_ELEMENTS", 0)
    probe("subject", 3)
    assert solves == [2, 1, 1, 2, 1]  # solved at once
