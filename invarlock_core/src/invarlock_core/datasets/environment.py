"""Dataset options from flags, environment variables and a raw provider mapping.

Precedence: explicit values (CLI flags, API arguments) > ``INVARLOCK_DATASET_PROVIDER_JSON`` >
provider-specific environment variables > defaults. The variables:

* ``INVARLOCK_DATASET``: the provider when none is given;
* ``hf_text``: ``INVARLOCK_HF_DATASET_NAME``, ``INVARLOCK_HF_CONFIG_NAME``,
  ``INVARLOCK_HF_TEXT_FIELD``, ``INVARLOCK_HF_MAX_SAMPLES``, ``INVARLOCK_HF_CACHE_DIR``;
* ``local_jsonl``: ``INVARLOCK_LOCAL_JSONL_FILE``, ``INVARLOCK_LOCAL_JSONL_PATH``,
  ``INVARLOCK_LOCAL_JSONL_DATA_FILES``, ``INVARLOCK_LOCAL_JSONL_TEXT_FIELD``,
  ``INVARLOCK_LOCAL_JSONL_MAX_SAMPLES``;
* ``INVARLOCK_DATASET_PROVIDER_JSON``: ``{"kind": NAME, "data_path": ..., "text_field": ...}``
  (any :class:`DatasetOptions` field) overriding provider and options.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import attrs

from invarlock_core.datasets.provider import DatasetOptions
from invarlock_core.errors import ConfigError

__all__ = ["DEFAULT_DATASET", "resolve_dataset_options"]

DEFAULT_DATASET = "sample"

_ENV: dict[str, dict[str, tuple[str, ...]]] = {
    "hf_text": {
        "name": ("INVARLOCK_HF_DATASET_NAME",),
        "config": ("INVARLOCK_HF_CONFIG_NAME",),
        "text_field": ("INVARLOCK_HF_TEXT_FIELD",),
        "max_samples": ("INVARLOCK_HF_MAX_SAMPLES",),
        "cache_dir": ("INVARLOCK_HF_CACHE_DIR",),
    },
    "wikitext2": {"cache_dir": ("INVARLOCK_HF_CACHE_DIR",)},
    "local_jsonl": {
        "data_path": (
            "INVARLOCK_LOCAL_JSONL_FILE",
            "INVARLOCK_LOCAL_JSONL_PATH",
            "INVARLOCK_LOCAL_JSONL_DATA_FILES",
        ),
        "text_field": ("INVARLOCK_LOCAL_JSONL_TEXT_FIELD",),
        "max_samples": ("INVARLOCK_LOCAL_JSONL_MAX_SAMPLES",),
    },
}
_FIELDS = {field.name for field in attrs.fields(DatasetOptions)}


def _coerce(field: str, value: Any, origin: str) -> Any:
    if field == "max_samples":
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{origin}: max_samples must be an integer, got {value!r}") from None
        if number < 1:
            raise ConfigError(f"{origin}: max_samples must be at least 1, got {number}")
        return number
    if field in {"allow_network", "trust_remote_code"}:
        return bool(value)
    return str(value)


def _raw_mapping(env: Mapping[str, str]) -> dict[str, Any]:
    raw = env.get("INVARLOCK_DATASET_PROVIDER_JSON")
    if not raw:
        return {}
    try:
        mapping = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"INVARLOCK_DATASET_PROVIDER_JSON is not valid JSON: {exc}") from exc
    if not isinstance(mapping, dict):
        raise ConfigError("INVARLOCK_DATASET_PROVIDER_JSON must be a JSON object")
    unknown = sorted(set(mapping) - _FIELDS - {"kind"})
    if unknown:
        raise ConfigError(f"INVARLOCK_DATASET_PROVIDER_JSON: unknown keys {', '.join(unknown)}")
    return mapping


def resolve_dataset_options(
    dataset: str | None,
    explicit: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
) -> tuple[str, DatasetOptions]:
    """The provider name and :class:`DatasetOptions`; ``explicit`` holds non-``None`` overrides."""
    environ = os.environ if env is None else env
    raw = _raw_mapping(environ)
    name = dataset or raw.get("kind") or environ.get("INVARLOCK_DATASET") or DEFAULT_DATASET
    values: dict[str, Any] = {}
    for field, variables in _ENV.get(name, {}).items():
        for variable in variables:
            if environ.get(variable):
                values[field] = _coerce(field, environ[variable], variable)
                break
    for field, value in raw.items():
        if field != "kind":
            values[field] = _coerce(field, value, "INVARLOCK_DATASET_PROVIDER_JSON")
    for field, value in explicit.items():
        if value is not None:
            if field not in _FIELDS:
                raise ConfigError(f"unknown dataset option {field!r}")
            values[field] = value
    return str(name), DatasetOptions(**values)
