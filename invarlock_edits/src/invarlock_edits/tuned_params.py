"""The ``:clean:`` sentinel: tuned clean-edit parameters read from a JSON file.

``quant_rtn:clean:ffn`` means "RTN with the parameters tuned for this model". The file comes from
an explicit option (``invarlock edit apply --tuned-params FILE``) or the environment variable
``PACK_TUNED_EDIT_PARAMS_FILE``; without either, or when the file lacks the edit, the edit fails
with a one-line error (exit 2). The file (schema ``tuned_edit_params``) looks like::

    {
      "schema_version": 1,
      "edits": {"quant_rtn": {"bits": 4, "group_size": 32}, "fp8_quant": {"format": "e5m2"}},
      "models": {"mistral-7b": {"magnitude_prune": {"prune_level": 0.12}}}
    }

``edits`` holds defaults; ``models`` overrides them per model, matched against the baseline
directory's name or the config's ``_name_or_path`` (or its last path component). Edit names may
also appear at the top level (the flat form) as defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from invarlock_core.canonical import file_sha256, prefixed
from invarlock_core.errors import ConfigError, InputError
from invarlock_core.json_files import read_json
from invarlock_core.schema_validation import validate_instance

__all__ = ["CLEAN_SENTINEL", "TUNED_PARAMS_ENV", "TunedParams", "find_tuned_params_file"]

CLEAN_SENTINEL = "clean"
TUNED_PARAMS_ENV = "PACK_TUNED_EDIT_PARAMS_FILE"
_RESERVED = {"schema_version", "edits", "models", "provenance"}


def find_tuned_params_file(explicit: str | Path | None = None) -> Path:
    """The tuned-params file: ``explicit``, else ``$PACK_TUNED_EDIT_PARAMS_FILE``; must exist."""
    source = "--tuned-params"
    chosen: str | Path | None = explicit
    if chosen is None:
        chosen = os.environ.get(TUNED_PARAMS_ENV) or None
        source = TUNED_PARAMS_ENV
    if chosen is None:
        raise InputError(
            "the :clean: edit sentinel needs tuned parameters: pass --tuned-params FILE "
            f"or set {TUNED_PARAMS_ENV}"
        )
    path = Path(chosen)
    if not path.is_file():
        raise InputError(f"tuned edit params file {path} ({source}) does not exist")
    return path


@attrs.frozen
class TunedParams:
    """A loaded tuned-params file."""

    path: Path
    digest: str
    data: Mapping[str, Any]

    @classmethod
    def load(cls, path: Path) -> TunedParams:
        data = read_json(path, what="tuned edit params file", error=ConfigError)
        validate_instance(
            data, "tuned_edit_params", "invarlock_edits", what=f"tuned edit params file {path}"
        )
        return cls(path, prefixed(file_sha256(path)), data)

    def for_edit(self, edit: str, model_keys: tuple[str, ...]) -> dict[str, Any]:
        """The tuned parameters of ``edit`` for the first model key that has them, else the defaults."""
        models: Mapping[str, Any] = self.data.get("models", {})
        lowered = {key.lower(): value for key, value in models.items()}
        for key in model_keys:
            entry = lowered.get(key.lower(), {})
            if edit in entry:
                return dict(entry[edit])
        defaults: Mapping[str, Any] = self.data.get("edits", {})
        if edit in defaults:
            return dict(defaults[edit])
        if edit in self.data and edit not in _RESERVED:
            return dict(self.data[edit])
        known = sorted(
            {*defaults, *(k for k in self.data if k not in _RESERVED)}
            | {name for entry in models.values() for name in entry}
        )
        raise ConfigError(
            f"tuned edit params file {self.path} has no parameters for {edit} "
            f"(models tried: {', '.join(model_keys) or 'none'}); it has: {', '.join(known) or 'nothing'}"
        )


def model_keys(checkpoint_path: Path, config: Mapping[str, Any]) -> tuple[str, ...]:
    """Names a tuned-params file may use for a model: directory name, ``_name_or_path`` and its tail."""
    keys = [checkpoint_path.resolve().name]
    name_or_path = config.get("_name_or_path")
    if isinstance(name_or_path, str) and name_or_path:
        keys += [name_or_path, name_or_path.rstrip("/").rsplit("/", 1)[-1]]
    return tuple(dict.fromkeys(keys))
