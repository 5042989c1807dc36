"""Defensive reading of untrusted pack directories.

Everything a pack names is checked before it is touched: relative POSIX paths only, no ``..``,
no empty or ``.`` components, no control characters or backslashes (they would need escaping in
``sha256sum`` files), no two names that differ only by case. Files are opened with
``O_NOFOLLOW`` and read with a size bound; the tree walk refuses symlinks and special files.
Nothing from a pack is ever executed, imported or unpickled: only JSON is parsed.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

import attrs

from invarlock_core.json_files import MAX_JSON_BYTES, parse_json_strict

__all__ = [
    "MAX_FILES",
    "MAX_JSON_BYTES",
    "PackTree",
    "UnsafePathError",
    "case_collisions",
    "check_relpath",
    "is_safe_relpath",
    "parse_json_bytes",
    "read_bounded",
    "read_json_bounded",
    "walk_pack",
]

MAX_FILES: Final = 200_000
"""Upper bound on the number of files a pack may hold."""
MAX_DEPTH: Final = 32
MAX_PATH_CHARS: Final = 1024

_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


class UnsafePathError(ValueError):
    """A path inside a pack is unsafe (absolute, escaping, a link, a special file, ...)."""


def check_relpath(relpath: str) -> str:
    """Return ``relpath`` if it is a safe pack-relative POSIX path, else raise UnsafePathError."""
    if not relpath or len(relpath) > MAX_PATH_CHARS:
        raise UnsafePathError(f"invalid path length: {relpath[:80]!r}")
    if _UNSAFE_CHARS.search(relpath):
        raise UnsafePathError(f"path has control characters or backslashes: {relpath!r}")
    if relpath.startswith("/") or re.match(r"^[A-Za-z]:", relpath):
        raise UnsafePathError(f"absolute path: {relpath!r}")
    parts = relpath.split("/")
    if len(parts) > MAX_DEPTH:
        raise UnsafePathError(f"path too deep: {relpath!r}")
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafePathError(f"path has an empty, '.' or '..' component: {relpath!r}")
    return relpath


def is_safe_relpath(relpath: str) -> bool:
    """Whether :func:`check_relpath` accepts ``relpath``."""
    try:
        check_relpath(relpath)
    except UnsafePathError:
        return False
    return True


def case_collisions(relpaths: Iterable[str]) -> list[str]:
    """Paths that collide with another path when case is ignored (sorted)."""
    seen: dict[str, str] = {}
    clashes: set[str] = set()
    for path in relpaths:
        key = path.casefold()
        if key in seen and seen[key] != path:
            clashes.update((seen[key], path))
        seen.setdefault(key, path)
    return sorted(clashes)


def read_bounded(path: Path, limit: int = MAX_JSON_BYTES) -> bytes:
    """Read a regular file without following a final symlink, refusing more than ``limit`` bytes.

    Raises ``FileNotFoundError`` when absent, :class:`UnsafePathError` for links, special files
    and oversized files.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        if path.is_symlink():
            raise UnsafePathError(f"{path.name} is a symbolic link") from exc
        raise UnsafePathError(f"{path.name} cannot be opened: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UnsafePathError(f"{path.name} is not a regular file")
        if info.st_size > limit:
            raise UnsafePathError(f"{path.name} is larger than {limit} bytes")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise UnsafePathError(f"{path.name} is larger than {limit} bytes")
    return data


def read_json_bounded(path: Path, limit: int = MAX_JSON_BYTES) -> Any:
    """Parse a JSON file read with :func:`read_bounded` strictly (:func:`parse_json_bytes`).

    Raises ``ValueError`` (including ``json.JSONDecodeError`` and ``UnicodeDecodeError``) for
    documents that are not strict UTF-8 JSON.
    """
    return parse_json_bytes(read_bounded(path, limit))


def parse_json_bytes(data: bytes) -> Any:
    """Parse strict UTF-8 JSON bytes; raises ``ValueError`` otherwise.

    Duplicate keys, NaN/Infinity, nesting beyond the core's depth bound and oversized documents
    are refused (:func:`invarlock_core.json_files.parse_json_strict`).
    """
    return parse_json_strict(data)


@attrs.frozen
class PackTree:
    """What a walk over a pack directory found."""

    files: tuple[str, ...]
    """Regular files, as sorted pack-relative POSIX paths."""
    problems: tuple[str, ...]
    """Links, special files, unsafe names and case collisions found on the way."""


def walk_pack(root: Path) -> PackTree:
    """List every regular file under ``root`` without following links, with its problems."""
    files: list[str] = []
    problems: list[str] = []
    stack: list[tuple[Path, str]] = [(root, "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            problems.append(f"{prefix or '.'}: cannot list directory ({exc.strerror})")
            continue
        for entry in entries:
            rel = f"{prefix}{entry.name}"
            if not is_safe_relpath(rel):
                problems.append(f"unsafe file name: {rel!r}")
                continue
            if entry.is_symlink():
                problems.append(f"symbolic link: {rel}")
            elif entry.is_dir(follow_symlinks=False):
                if rel.count("/") + 1 >= MAX_DEPTH:
                    problems.append(f"directory too deep: {rel}")
                else:
                    stack.append((Path(entry.path), rel + "/"))
            elif entry.is_file(follow_symlinks=False):
                files.append(rel)
                if len(files) > MAX_FILES:
                    problems.append(f"more than {MAX_FILES} files")
                    return PackTree(tuple(sorted(files)), tuple(problems))
            else:
                problems.append(f"special file (not a regular file or directory): {rel}")
    problems.extend(f"names differ only by case: {p}" for p in case_collisions(files))
    return PackTree(tuple(sorted(files)), tuple(sorted(problems)))
