"""Docstrings speak in the project's own words and point only at files that exist.

Every ``docs/...``, ``benchmarks/...``, ``examples/...`` or ``tests/...`` path named in a module,
class or function docstring of the five distributions must be a file in this repository, and no
docstring refers to an outside "seed system".
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCES = [REPO / d / "src" for d in ("invarlock_core", "invarlock_edits", "invarlock_guards", "invarlock_packs", "veriscope_gate")]
PATH = re.compile(r"\b((?:docs|benchmarks|examples|tests)/[\w./-]+\.\w+)")


def docstrings() -> Iterator[tuple[Path, str]]:
    for root in SOURCES:
        for file in sorted(root.rglob("*.py")):
            tree = ast.parse(file.read_text("utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                    text = ast.get_docstring(node)
                    if text:
                        yield file, text


def test_named_files_exist() -> None:
    missing = [
        f"{file.relative_to(REPO)}: {path}"
        for file, text in docstrings()
        for path in PATH.findall(text)
        if not (REPO / path.rstrip(".")).exists()
    ]
    assert missing == []


def test_no_docstring_refers_to_the_seed_system() -> None:
    found = [str(file.relative_to(REPO)) for file, text in docstrings() if re.search(r"seed system|the seed's", text)]
    assert found == []


def test_the_path_pattern() -> None:
    assert PATH.findall("see ``docs/reference/cli.md`` and benchmarks/bench_x.py.") == [
        "docs/reference/cli.md",
        "benchmarks/bench_x.py",
    ]
