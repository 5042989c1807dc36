"""``local_jsonl``: texts from JSON Lines files on disk.

``--data-path`` names a file, a directory (every ``*.jsonl`` in it) or a glob; several may be given
separated by commas. Each line is a JSON object whose ``text_field`` (default ``text``) holds a
string; ``max_samples`` keeps the first N texts in file order.
"""

from __future__ import annotations

import glob
import json
from pathlib import Path

import attrs

from invarlock_core.canonical import canonical_digest, file_sha256, prefixed
from invarlock_core.datasets.provider import DatasetOptions, DatasetTexts
from invarlock_core.errors import DatasetError

__all__ = ["LocalJsonlProvider", "resolve_jsonl_files"]


def resolve_jsonl_files(spec: str) -> list[Path]:
    """Files named by ``spec``: comma-separated files, directories or globs, sorted per part."""
    files: list[Path] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        path = Path(part)
        if path.is_dir():
            found = sorted(path.glob("*.jsonl"))
            if not found:
                raise DatasetError(f"local_jsonl: directory {path} has no *.jsonl files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        elif glob.has_magic(part):
            found = sorted(Path(p) for p in glob.glob(part) if Path(p).is_file())
            if not found:
                raise DatasetError(f"local_jsonl: no files match {part!r}")
            files.extend(found)
        else:
            raise DatasetError(f"local_jsonl: {path} does not exist")
    if not files:
        raise DatasetError("local_jsonl needs --data-path FILE|DIR|GLOB")
    return list(dict.fromkeys(files))


def _read_texts(file: Path, field: str, limit: int | None, texts: list[str]) -> None:
    try:
        handle = file.open(encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"local_jsonl: cannot read {file}: {exc.strerror}") from exc
    with handle:
        for number, line in enumerate(handle, start=1):
            if limit is not None and len(texts) >= limit:
                return
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise DatasetError(f"local_jsonl: {file}:{number} is not valid JSON: {exc}") from exc
            value = record.get(field) if isinstance(record, dict) else None
            if not isinstance(value, str):
                raise DatasetError(
                    f"local_jsonl: {file}:{number} has no string field {field!r} "
                    "(set --text-field)"
                )
            if value.strip():
                texts.append(value)


@attrs.frozen
class LocalJsonlProvider:
    """JSON Lines texts from local files (no network)."""

    name: str = "local_jsonl"
    summary: str = "JSON Lines files on disk (--data-path FILE|DIR|GLOB, --text-field, --max-samples)"

    def load(self, options: DatasetOptions) -> DatasetTexts:
        if not options.data_path:
            raise DatasetError("local_jsonl needs --data-path FILE|DIR|GLOB")
        files = resolve_jsonl_files(options.data_path)
        texts: list[str] = []
        for file in files:
            _read_texts(file, options.text_field, options.max_samples, texts)
        if not texts:
            raise DatasetError(f"local_jsonl: {options.data_path} holds no non-empty texts")
        digests = {str(f): file_sha256(f) for f in files}
        return DatasetTexts(
            provider=self.name,
            texts=tuple(texts),
            source=",".join(str(f) for f in files),
            license="unknown (local files)",
            revision=prefixed(canonical_digest(digests)),
        )
