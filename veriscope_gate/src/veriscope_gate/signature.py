"""``window_signature.json``: the compatibility key of a run, and its canonical hash.

The hash is SHA-256 over the canonical JSON (sorted keys, compact separators, UTF-8, no NaN) of
the whole object, with ``created_ts_utc`` left out **only** when it is a valid ISO 8601 UTC
timestamp ending in ``Z``. Any other value of ``created_ts_utc`` makes the signature invalid.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from invarlock_core.canonical import canonical_digest, prefixed
from veriscope_gate.controls import GateControls
from veriscope_gate.errors import ArtifactError
from veriscope_gate.timeutil import is_utc_timestamp, utc_now
from veriscope_gate.version import __version__

__all__ = ["build_window_signature", "same_hash", "window_signature_hash"]


def window_signature_hash(signature: Mapping[str, Any]) -> str:
    """``"sha256:<hex>"`` of ``signature`` with a valid ``created_ts_utc`` excluded."""
    body = dict(signature)
    if "created_ts_utc" in body:
        if not is_utc_timestamp(body["created_ts_utc"]):
            raise ArtifactError(
                "window_signature.created_ts_utc must be an ISO 8601 UTC timestamp ending in Z, "
                f"found {body['created_ts_utc']!r}"
            )
        del body["created_ts_utc"]
    try:
        return prefixed(canonical_digest(body))
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"window_signature.json cannot be hashed canonically: {exc}") from None


def same_hash(a: str, b: str) -> bool:
    """Compare two digests, accepting both ``sha256:<hex>`` and bare ``<hex>`` spellings."""

    def norm(h: str) -> str:
        return h.lower().removeprefix("sha256:")

    return norm(a) == norm(b)


def build_window_signature(
    *,
    gate_preset: str,
    controls: GateControls,
    ranges: Mapping[str, tuple[float, float]],
    runner: Mapping[str, Any],
    probe: Mapping[str, Any],
) -> dict[str, Any]:
    """The signature object of a run: transport, evidence, gates, metrics, probe and code identity."""
    weights = {m: controls.weights[m] for m in sorted(controls.weights)}
    return {
        "schema_version": 1,
        "created_ts_utc": utc_now(),
        "code": {"package": "veriscope-gate", "version": __version__},
        "runner": dict(runner),
        "probe": dict(probe),
        "transport": {
            "method": "calibrated_range_clip",
            "bins": controls.bins,
            "ranges": {m: [float(lo), float(hi)] for m, (lo, hi) in sorted(ranges.items())
                       if m in weights},
        },
        "evidence": {
            "metric_interval": controls.metric_interval,
            "window_snapshots": controls.window_snapshots,
            "min_evidence": controls.min_evidence,
        },
        "metrics": {"names": sorted(weights), "weights": weights},
        "gates": {
            "gate_preset": gate_preset,
            "controls": controls.hash_payload(),
            "gate_controls_hash": controls.controls_hash(),
        },
    }
