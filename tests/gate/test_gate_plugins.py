"""Metric plugins: built-ins come through the entry point; throwaway plugins register the same way."""

from __future__ import annotations

import math

import attrs
import numpy as np
import pytest

from veriscope_gate import hookimpl
from veriscope_gate.errors import MetricError
from veriscope_gate.metrics import Sketch, builtin_metrics, sketch_from_array
from veriscope_gate.plugins import get_metric_registry, get_plugin_manager


@attrs.frozen
class MeanEig:
    name: str = "mean_eig"
    summary: str = "mean eigenvalue (a test metric)"

    @property
    def calibration_range(self) -> tuple[float, float]:
        return (0.0, 10.0)

    def compute(self, sketch: Sketch) -> float:
        return float(np.mean(sketch.eigenvalues))


class ThrowawayPlugin:
    @hookimpl
    def veriscope_register_metrics(self, register):  # type: ignore[no-untyped-def]
        register(MeanEig())


def test_builtins_come_from_the_entry_point() -> None:
    registry = get_metric_registry()
    assert registry.names() == ["cos_disp", "eff_dim", "rankme", "var_out_k"]
    assert registry.registration("eff_dim").plugin == "veriscope_gate.metrics"


def test_third_party_metric_registers(monkeypatch: pytest.MonkeyPatch) -> None:
    pm = get_plugin_manager()
    pm.register(ThrowawayPlugin(), name="throwaway")
    try:
        assert "mean_eig" in get_metric_registry(pm)
    finally:
        pm.unregister(name="throwaway")


def test_duplicate_metric_is_an_error() -> None:
    pm = get_plugin_manager()

    class Dup:
        @hookimpl
        def veriscope_register_metrics(self, register):  # type: ignore[no-untyped-def]
            register(builtin_metrics()[0])

    pm.register(Dup(), name="dup")
    with pytest.raises(MetricError, match="registered twice"):
        get_metric_registry(pm)


def test_disable_env_drops_builtins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERISCOPE_DISABLE_PLUGINS", "veriscope_gate.metrics")
    assert get_metric_registry().names() == []


def test_builtin_formulas_on_known_spectra() -> None:
    d = 64
    flat = Sketch(eigenvalues=np.ones(d), pair_abs_cos=np.array([0.0, 0.2]), dim=d, tokens=100)
    var_out, eff, rank, cos = builtin_metrics(d)
    assert var_out.compute(flat) == pytest.approx(1 - 8 / 64)
    assert eff.compute(flat) == pytest.approx(64.0)
    assert rank.compute(flat) == pytest.approx(64.0)
    assert cos.compute(flat) == pytest.approx(0.1)
    spike = Sketch(eigenvalues=np.r_[1.0, np.zeros(d - 1)], pair_abs_cos=np.array([1.0]), dim=d, tokens=100)
    assert var_out.compute(spike) == pytest.approx(0.0)
    assert eff.compute(spike) == pytest.approx(1.0)
    assert rank.compute(spike) == pytest.approx(1.0)
    empty = Sketch(eigenvalues=np.zeros(d), pair_abs_cos=np.array([]), dim=d, tokens=0)
    assert all(math.isnan(m.compute(empty)) for m in builtin_metrics(d))


def test_collapse_is_visible_in_every_metric() -> None:
    rng = np.random.default_rng(0)
    healthy = sketch_from_array(rng.standard_normal((512, 64)))
    collapsed = sketch_from_array(rng.standard_normal((512, 2)) @ rng.standard_normal((2, 64)))
    var_out, eff, rank, cos = builtin_metrics(64)
    assert var_out.compute(collapsed) < 0.05 < var_out.compute(healthy)
    assert eff.compute(collapsed) < 3 < eff.compute(healthy)
    assert rank.compute(collapsed) < rank.compute(healthy)
    assert cos.compute(collapsed) > cos.compute(healthy)


def test_a_metric_hook_with_the_wrong_signature_is_refused() -> None:
    pm = get_plugin_manager(entry_points=False)

    class WrongSignature:
        @hookimpl
        def veriscope_register_metrics(self, registry):  # type: ignore[no-untyped-def]
            registry(builtin_metrics()[0])

    with pytest.raises(MetricError, match=r"^veriscope plugin wrong_sig .*registry") as caught:
        pm.register_module(WrongSignature(), "wrong_sig", "wrong-sig", "0.1")
    assert "VERISCOPE_DISABLE_PLUGINS=wrong_sig" in str(caught.value)
    assert "\n" not in str(caught.value)
