"""``checksums.sha256``: hashing pack files and reading and writing the sealed list.

The file is ``sha256sum`` compatible: one ``<64 lowercase hex>  <relpath>`` line per file, sorted
by path, LF line endings. Hashing runs on a small thread pool (OpenSSL releases the GIL while it
hashes), so a pack of many files hashes at least as fast as ``sha256sum`` does.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

from invarlock_packs.safe_paths import UnsafePathError, case_collisions, check_relpath

__all__ = [
    "ChecksumFormatError",
    "format_checksums",
    "hash_file",
    "hash_files",
    "parse_checksums",
]

_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")
_MAX_WORKERS: Final = 8
_POOL_MIN_BYTES: Final = 1 << 20
_CHUNK: Final = 1 << 20


class ChecksumFormatError(ValueError):
    """``checksums.sha256`` is malformed (bad line, unsafe or duplicated path)."""


def hash_file(path: Path) -> str:
    """Hex SHA-256 of a regular file; refuses to follow a final symlink."""
    # O_NONBLOCK: a FIFO swapped in for a file must not block the verifier.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    digest = hashlib.sha256()
    try:
        while chunk := os.read(fd, _CHUNK):
            digest.update(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()


def hash_files(
    root: Path, relpaths: Iterable[str], *, workers: int | None = None
) -> dict[str, str]:
    """Hex SHA-256 of each ``root/relpath``. Files that cannot be read map to ``""``.

    Large files go to a thread pool (OpenSSL hashes them without the GIL); small files are hashed
    in the calling thread meanwhile, where thread hand-offs would cost more than they save.
    """

    def one(rel: str) -> str:
        try:
            return hash_file(root / rel)
        except OSError:
            return ""

    small: list[str] = []
    large: list[str] = []
    for rel in relpaths:
        try:
            size = os.lstat(root / rel).st_size
        except OSError:
            size = 0
        (large if size >= _POOL_MIN_BYTES else small).append(rel)
    count = workers or min(_MAX_WORKERS, (os.cpu_count() or 1) + 1)
    if count <= 1 or len(large) < 2:
        return {rel: one(rel) for rel in (*small, *large)}
    with ThreadPoolExecutor(max_workers=count) as pool:
        pending = pool.map(one, large)
        result = {rel: one(rel) for rel in small}
        result.update(zip(large, pending))
    return result


def format_checksums(digests: Mapping[str, str]) -> bytes:
    """The bytes of a ``checksums.sha256`` file for ``{relpath: hex}`` (sorted by path)."""
    lines = []
    for rel in sorted(digests):
        check_relpath(rel)
        lines.append(f"{digests[rel]}  {rel}\n")
    return "".join(lines).encode("utf-8")


def parse_checksums(data: bytes) -> dict[str, str]:
    """Parse a ``checksums.sha256`` file strictly into ``{relpath: hex}``.

    Raises :class:`ChecksumFormatError` for non-UTF-8 text, malformed lines, unsafe paths,
    duplicates and case-colliding paths.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ChecksumFormatError("checksums.sha256 is not UTF-8") from exc
    if text and not text.endswith("\n"):
        raise ChecksumFormatError("checksums.sha256 does not end with a newline")
    result: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        match = _LINE.match(line)
        if match is None:
            raise ChecksumFormatError(f"checksums.sha256 line {number} is malformed")
        digest, rel = match.groups()
        try:
            check_relpath(rel)
        except UnsafePathError as exc:
            raise ChecksumFormatError(f"checksums.sha256 line {number}: {exc}") from exc
        if rel in result:
            raise ChecksumFormatError(f"checksums.sha256 lists {rel} twice")
        result[rel] = digest
    clashes = case_collisions(result)
    if clashes:
        raise ChecksumFormatError(
            f"checksums.sha256 has names that differ only by case: {clashes[0]}"
        )
    return result
