"""Mutation-test the modules that carry trust, and hold their survivors to a checked-in list.

``make mutate`` (or ``python mutation/mutate.py [MODULE ...]``) runs mutmut over each module named in
``mutation/modules.toml``, one at a time, against that module's own test files. mutmut expects one
``src/`` tree, while this repository keeps five distributions side by side, so every module is run in
a fresh staging folder ``.mutation/<module>/`` holding a copy of the five source packages under
``src/``, the tests, and a generated ``pyproject.toml``. ``PYTHONPATH`` points at mutmut's mutated copy,
so tests that start a CLI subprocess run the mutant too.

A module passes when at least 90% of its mutants are killed (a timeout counts as killed: the mutant
hung the code) and every survivor is listed, with the reason it is equivalent, in
``mutation/survivors/<module>.toml``. A listed survivor that no longer survives is reported as stale.
``--record`` appends unlisted survivors to that file with ``reason = "TODO"``; the fast test
``tests/test_mutation_survivors.py`` rejects a TODO, so a recorded survivor must be explained (or
killed by a new test) before it is committed.

Exit status: 0 every module passed, 1 a module missed its target or has unlisted or stale survivors,
2 bad input (an unknown module name, a mutmut run that did not finish).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES_FILE = ROOT / "mutation" / "modules.toml"
SURVIVORS_DIR = ROOT / "mutation" / "survivors"
STAGING_DIR = ROOT / ".mutation"
PACKAGES = ("invarlock_core", "invarlock_edits", "invarlock_guards", "invarlock_packs", "veriscope_gate")
TARGET = 0.90
KILLED = frozenset({"killed", "timeout", "segfault", "caught by type check"})
SURVIVED = frozenset({"survived", "no tests"})
MUTANT_MARK = "__mutmut_"


class MutateError(Exception):
    """Bad input or a mutmut run that did not finish (exit 2)."""


@dataclass(frozen=True)
class Module:
    """One module under mutation: its source path and the tests that must kill its mutants."""

    path: str
    tests: tuple[str, ...]
    also_copy: tuple[str, ...] = ()

    @property
    def dotted(self) -> str:
        package_relative = self.path.split("/src/", 1)[1]
        return package_relative.removesuffix(".py").replace("/", ".")

    @property
    def survivors_file(self) -> Path:
        return SURVIVORS_DIR / f"{self.dotted}.toml"


@dataclass(frozen=True)
class Survivor:
    """A surviving mutant, identified by its function and its changed lines (not mutmut's number)."""

    function: str
    diff: tuple[str, ...]
    reason: str = ""
    mutant: str = ""

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        return (self.function, self.diff)


@dataclass
class Outcome:
    """What one module's run found."""

    module: Module
    killed: int = 0
    total: int = 0
    unlisted: list[Survivor] = field(default_factory=list)
    stale: list[Survivor] = field(default_factory=list)
    equivalent: int = 0

    @property
    def score(self) -> float:
        return self.killed / self.total if self.total else 1.0

    @property
    def passed(self) -> bool:
        return self.score >= TARGET and not self.unlisted and not self.stale


def load_modules(path: Path = MODULES_FILE) -> list[Module]:
    """The modules under mutation, as ``mutation/modules.toml`` lists them."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return [
        Module(
            path=entry["path"],
            tests=tuple(entry["tests"]),
            also_copy=tuple(entry.get("also_copy", ())),
        )
        for entry in data["module"]
    ]


def load_survivors(module: Module) -> list[Survivor]:
    """The survivors checked in for ``module`` (none when it has no file)."""
    if not module.survivors_file.exists():
        return []
    data = tomllib.loads(module.survivors_file.read_text(encoding="utf-8"))
    return [
        Survivor(
            function=entry["function"],
            diff=tuple(entry["diff"]),
            reason=entry["reason"],
            mutant=entry.get("mutant", ""),
        )
        for entry in data.get("survivor", [])
    ]


def survivor_problems(module: Module, root: Path = ROOT) -> list[str]:
    """Why the checked-in survivors of ``module`` are not current: no reason, or code that is gone."""
    source = (root / module.path).read_text(encoding="utf-8")
    source_lines = {line.strip() for line in source.splitlines()}
    problems = []
    for survivor in load_survivors(module):
        where = f"{module.survivors_file.name}: {survivor.function}"
        if survivor.reason.strip() in ("", "TODO"):
            problems.append(f"{where}: no reason given (TODO is not a reason)")
        if f"def {survivor.function.rsplit('.', 1)[-1]}(" not in source:
            problems.append(f"{where}: no such function in {module.path}")
        if not survivor.diff or any(line[:1] not in ("+", "-") for line in survivor.diff):
            problems.append(f"{where}: diff must be removed (-) and added (+) lines")
        removed = [line[1:].strip() for line in survivor.diff if line.startswith("-")]
        missing = [line for line in removed if line not in source_lines]
        if missing:
            problems.append(f"{where}: {missing[0]!r} is no longer in {module.path}")
    return problems


def function_of(mutant_name: str) -> str:
    """``pkg.mod.xǁClassǁmethod__mutmut_3`` -> ``Class.method``; ``pkg.mod.x_fn__mutmut_1`` -> ``fn``."""
    local = mutant_name.rsplit(".", 1)[1].split(MUTANT_MARK, 1)[0]
    if local.startswith("xǁ"):
        return local.removeprefix("xǁ").replace("ǁ", ".")
    return local.removeprefix("x_")


def changed_lines(diff_text: str) -> tuple[str, ...]:
    """The removed and added lines of a unified diff, without its file headers."""
    return tuple(
        line.rstrip()
        for line in diff_text.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    )


def _toml_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(json.dumps(value) for value in values) + "]"


def stage(module: Module) -> Path:
    """A fresh staging folder for ``module``: the five packages under ``src/``, tests, pyproject."""
    folder = STAGING_DIR / module.dotted
    shutil.rmtree(folder, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    for package in PACKAGES:
        shutil.copytree(ROOT / package / "src" / package, folder / "src" / package, ignore=ignore)
    shutil.copytree(ROOT / "tests", folder / "tests", ignore=ignore)
    for extra in module.also_copy:
        source = ROOT / extra
        if source.is_dir():
            shutil.copytree(source, folder / extra, ignore=ignore)
        else:
            (folder / extra).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, folder / extra)
    pytest_options = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "pytest"
    ]["ini_options"]
    staged_path = "src/" + module.path.split("/src/", 1)[1]
    (folder / "pyproject.toml").write_text(
        "\n".join(
            [
                "[tool.pytest.ini_options]",
                f"addopts = {_toml_list(['--strict-markers', '-p', 'no:cacheprovider', '-q'])}",
                f"markers = {_toml_list(pytest_options['markers'])}",
                f"filterwarnings = {_toml_list(pytest_options['filterwarnings'])}",
                "",
                "[tool.mutmut]",
                'source_paths = ["src/"]',
                f"only_mutate = {_toml_list([staged_path])}",
                f"pytest_add_cli_args_test_selection = {_toml_list(module.tests)}",
                "",
            ]
        ),
        encoding="utf-8",
    )
    return folder


def run_mutmut(folder: Path, jobs: int) -> None:
    """Run ``mutmut run`` in ``folder``; its progress goes to ``folder/mutmut.log``."""
    mutmut = Path(sys.executable).with_name("mutmut")
    mutated_src = folder / "mutants" / "src"
    # The folder must exist before mutmut starts: Python caches "no finder" for a missing sys.path
    # entry on the first import, and would then never look into the mutated copy.
    mutated_src.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(mutated_src), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("OMP_NUM_THREADS", "1")
    with (folder / "mutmut.log").open("w", encoding="utf-8") as log:
        completed = subprocess.run(
            [str(mutmut), "run", "--max-children", str(jobs)],
            cwd=folder,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if completed.returncode != 0:
        raise MutateError(f"mutmut run failed in {folder} (exit {completed.returncode}); see mutmut.log")


def statuses(folder: Path, module: Module) -> dict[str, str]:
    """Each mutant's status, read from mutmut's metadata for the staged module."""
    from mutmut.stats import status_by_exit_code

    meta = folder / "mutants" / ("src/" + module.path.split("/src/", 1)[1] + ".meta")
    if not meta.exists():
        raise MutateError(f"mutmut wrote no results for {module.path}; see {folder / 'mutmut.log'}")
    exit_codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
    return {name: status_by_exit_code[code] for name, code in exit_codes.items()}


def survivors_in(folder: Path, module: Module, names: Sequence[str]) -> list[Survivor]:
    """The function and changed lines of each surviving mutant, read from mutmut's mutated copy."""
    from mutmut.configuration import reset_config
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    staged_path = "src/" + module.path.split("/src/", 1)[1]
    with contextlib.chdir(folder):
        reset_config()
        return [
            Survivor(
                function=function_of(name),
                diff=changed_lines(get_diff_for_mutant(name, path=staged_path)),
                mutant=name,
            )
            for name in names
        ]


def judge(module: Module, folder: Path) -> Outcome:
    """Score one module and compare its survivors with the checked-in list."""
    by_name = statuses(folder, module)
    unfinished = sorted(name for name, status in by_name.items() if status not in KILLED | SURVIVED)
    if unfinished:
        raise MutateError(f"{len(unfinished)} mutants of {module.path} did not finish, e.g. {unfinished[0]}")
    outcome = Outcome(module=module, total=len(by_name))
    outcome.killed = sum(status in KILLED for status in by_name.values())
    surviving = survivors_in(
        folder, module, [name for name, status in sorted(by_name.items()) if status in SURVIVED]
    )
    listed = {survivor.key: survivor for survivor in load_survivors(module)}
    found = {survivor.key for survivor in surviving}
    outcome.unlisted = [survivor for survivor in surviving if survivor.key not in listed]
    outcome.stale = [survivor for key, survivor in listed.items() if key not in found]
    outcome.equivalent = len(surviving) - len(outcome.unlisted)
    return outcome


def record(outcome: Outcome) -> None:
    """Append ``outcome``'s unlisted survivors to its survivors file, each with ``reason = "TODO"``."""
    path = outcome.module.survivors_file
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text(encoding="utf-8") if path.exists() else _survivors_header(outcome.module)
    for survivor in outcome.unlisted:
        text += (
            "\n[[survivor]]\n"
            f"mutant = {json.dumps(survivor.mutant)}\n"
            f"function = {json.dumps(survivor.function)}\n"
            f"diff = {_toml_list(survivor.diff)}\n"
            'reason = "TODO"\n'
        )
    path.write_text(text, encoding="utf-8")


def _survivors_header(module: Module) -> str:
    return (
        f"# Mutants of {module.path} that survive `make mutate`, each with the reason it is\n"
        "# equivalent (no input tells it apart from the original). Identity is the function and the\n"
        "# changed lines; `mutant` is mutmut's name at the time it was recorded, for `mutmut show`.\n"
    )


def summary_line(outcome: Outcome) -> str:
    verdict = "ok" if outcome.passed else "FAIL"
    return (
        f"{verdict:4} {outcome.module.dotted}: {outcome.killed}/{outcome.total} killed "
        f"({outcome.score:.1%}), {outcome.equivalent} listed equivalent, "
        f"{len(outcome.unlisted)} unlisted, {len(outcome.stale)} stale"
    )


def write_scores(outcomes: Sequence[Outcome]) -> None:
    """Merge this run's scores into ``.mutation/scores.json`` (one entry per module, latest run)."""
    path = STAGING_DIR / "scores.json"
    scores = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    for o in outcomes:
        scores[o.module.dotted] = {"killed": o.killed, "total": o.total, "passed": o.passed}
    path.write_text(json.dumps(scores, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def select(modules: list[Module], names: Sequence[str]) -> list[Module]:
    """The modules whose dotted name or path contains one of ``names`` (all when none are given)."""
    if not names:
        return modules
    chosen = [m for m in modules if any(name in m.dotted or name in m.path for name in names)]
    if not chosen:
        raise MutateError(f"no module in {MODULES_FILE.name} matches {', '.join(names)}")
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("modules", nargs="*", help="dotted names or path parts (default: every module)")
    parser.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 1)), help="mutmut children")
    parser.add_argument("--record", action="store_true", help="append unlisted survivors with reason TODO")
    args = parser.parse_args(argv)
    try:
        outcomes = []
        for module in select(load_modules(), args.modules):
            print(f"mutating {module.path} against {' '.join(module.tests)}", flush=True)
            folder = stage(module)
            run_mutmut(folder, args.jobs)
            outcome = judge(module, folder)
            if args.record and outcome.unlisted:
                record(outcome)
            outcomes.append(outcome)
            print(summary_line(outcome), flush=True)
            for survivor in outcome.unlisted:
                print(f"     unlisted {survivor.mutant}: {' | '.join(survivor.diff)}")
            for survivor in outcome.stale:
                print(f"     stale    {survivor.function}: {' | '.join(survivor.diff)}")
    except MutateError as error:
        print(f"mutate: {error}", file=sys.stderr)
        return 2
    write_scores(outcomes)
    return 0 if all(outcome.passed for outcome in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
