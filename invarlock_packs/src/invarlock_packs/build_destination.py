"""Where ``build_pack`` may write: never over its own inputs, never over a directory that is no pack.

``--overwrite`` replaces a previous pack as one swap (:mod:`invarlock_core.directory_swap`). Before
that, the destination is checked: it must not be an input, contain an input or lie inside an
input's directory (replacing it would delete the inputs the new pack is built from), and an
existing destination must be a directory holding an evidence-pack ``manifest.json`` (so a typo
cannot replace a home directory or a run directory).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from invarlock_core.errors import InputError, UsageError
from invarlock_packs import layout
from invarlock_packs.safe_paths import UnsafePathError, read_bounded

__all__ = ["check_destination", "check_not_over_inputs"]

_MANIFEST_PROBE_BYTES = 64 * 1024 * 1024


def _is_pack(directory: Path) -> bool:
    try:
        head = read_bounded(directory / layout.MANIFEST, _MANIFEST_PROBE_BYTES)
    except (OSError, UnsafePathError):
        return False
    return layout.FORMAT.encode() in head


def check_destination(target: Path, *, overwrite: bool) -> None:
    """Refuse an existing ``target`` without ``overwrite``, or one that is not a pack directory."""
    if not (target.exists() or target.is_symlink()):
        return
    if not overwrite:
        raise InputError(f"{target} already exists (use overwrite to replace it)")
    if target.is_symlink() or not target.is_dir():
        raise InputError(f"{target} is not a directory; refusing to replace it with a pack")
    if not _is_pack(target):
        raise InputError(
            f"{target} is not an evidence pack (no {layout.FORMAT} manifest.json); "
            "refusing to overwrite it"
        )


def _inside(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def check_not_over_inputs(target: Path, files: Iterable[Path], directories: Iterable[Path]) -> None:
    """Refuse a ``target`` that is, contains or lies inside any input (all paths resolved)."""
    out = Path(os.path.realpath(target))
    for source in files:
        real = Path(os.path.realpath(source))
        if _inside(real, out):
            raise UsageError(
                f"the pack directory {target} contains the input {source}; choose another"
            )
    for source in directories:
        real = Path(os.path.realpath(source))
        if _inside(out, real) or _inside(real, out):
            raise UsageError(
                f"the pack directory {target} overlaps the input directory {source}; choose another"
            )
