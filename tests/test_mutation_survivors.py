"""The mutation-testing configuration and its survivors list stay current with the code.

``make mutate`` is too slow for ``make test``; this fast check keeps what it relies on honest: every
module and test file it names exists, and every listed survivor still names a function and lines that
are in the module today, with a reason (``TODO`` is what ``--record`` writes and is not a reason).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_mutate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutate", ROOT / "mutation" / "mutate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutate"] = module
    spec.loader.exec_module(module)
    return module


mutate = _load_mutate()
MODULES = mutate.load_modules()


def test_every_module_and_test_file_exists() -> None:
    assert MODULES, "mutation/modules.toml lists no module"
    dotted = [module.dotted for module in MODULES]
    assert len(dotted) == len(set(dotted)), "a module is listed twice"
    for module in MODULES:
        assert (ROOT / module.path).is_file(), module.path
        assert module.tests, f"{module.path} names no tests"
        for test in module.tests:
            assert (ROOT / test).exists(), f"{module.path}: {test} does not exist"


def test_every_survivors_file_belongs_to_a_module() -> None:
    known = {module.survivors_file.name for module in MODULES}
    for path in sorted((ROOT / "mutation" / "survivors").glob("*")):
        if path.name == ".gitkeep":
            continue
        assert path.name in known, f"{path.name} names no module in mutation/modules.toml"


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.dotted)
def test_listed_survivors_are_explained_and_current(module: Any) -> None:
    assert mutate.survivor_problems(module) == []


def _module_with_survivor(tmp_path: Path, reason: str, removed: str) -> Any:
    source = tmp_path / "pkg" / "src" / "pkg" / "rules.py"
    source.parent.mkdir(parents=True)
    source.write_text("def limit(x):\n    return x > 1.0\n", encoding="utf-8")
    module = mutate.Module(path="pkg/src/pkg/rules.py", tests=("tests/test_rules.py",))
    mutate.SURVIVORS_DIR = tmp_path / "survivors"
    mutate.SURVIVORS_DIR.mkdir()
    module.survivors_file.write_text(
        f'[[survivor]]\nfunction = "limit"\ndiff = ["-{removed}", "+    return x >= 1.0"]\n'
        f"reason = {reason!r}\n",
        encoding="utf-8",
    )
    return module


def test_survivor_check_accepts_a_current_explained_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mutate, "SURVIVORS_DIR", mutate.SURVIVORS_DIR)
    module = _module_with_survivor(tmp_path, "x is never exactly 1.0 here", "    return x > 1.0")
    assert mutate.survivor_problems(module, root=tmp_path) == []


@pytest.mark.parametrize(
    ("reason", "removed", "problem"),
    [
        ("TODO", "    return x > 1.0", "no reason"),
        ("", "    return x > 1.0", "no reason"),
        ("fine", "    return x > 2.0", "no longer in"),
    ],
)
def test_survivor_check_rejects_todo_and_stale_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reason: str, removed: str, problem: str
) -> None:
    monkeypatch.setattr(mutate, "SURVIVORS_DIR", mutate.SURVIVORS_DIR)
    module = _module_with_survivor(tmp_path, reason, removed)
    problems = mutate.survivor_problems(module, root=tmp_path)
    assert len(problems) == 1
    assert problem in problems[0]


def test_mutant_names_map_to_functions_and_methods() -> None:
    assert mutate.function_of("pkg.mod.x_judge__mutmut_12") == "judge"
    assert mutate.function_of("pkg.mod.x__fmt__mutmut_1") == "_fmt"
    assert mutate.function_of("pkg.mod.xǁTaskQueueǁclaim__mutmut_3") == "TaskQueue.claim"


def test_changed_lines_keep_only_the_edit() -> None:
    diff = "--- a.py\n+++ a.py\n@@ -1,2 +1,2 @@\n def f():\n-    return 1  \n+    return 2"
    assert mutate.changed_lines(diff) == ("-    return 1", "+    return 2")


def test_score_target_is_ninety_percent() -> None:
    outcome = mutate.Outcome(module=MODULES[0], killed=9, total=10)
    assert outcome.passed
    outcome = mutate.Outcome(module=MODULES[0], killed=89, total=100)
    assert not outcome.passed
    outcome = mutate.Outcome(module=MODULES[0], killed=10, total=10, stale=[mutate.Survivor("f", ("-x",))])
    assert not outcome.passed
