"""Every CLI command and every plugin hook is documented under docs/reference/."""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference"


def _reference_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(REFERENCE.rglob("*.md")))


def _command_paths(parser: argparse.ArgumentParser, prefix: str) -> Iterator[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                path = f"{prefix} {name}"
                yield path
                yield from _command_paths(sub, path)


def _all_commands() -> list[str]:
    from invarlock_core.cli import build_parser

    commands = list(_command_paths(build_parser(), "invarlock"))
    try:
        from veriscope_gate.cli import build_parser as build_veriscope_parser
    except ImportError:  # pragma: no cover - veriscope not installed
        return commands
    return commands + list(_command_paths(build_veriscope_parser(), "veriscope"))


def test_there_are_commands_to_check() -> None:
    commands = _all_commands()
    assert "invarlock evaluate" in commands
    assert "invarlock plugins list" in commands


@pytest.mark.parametrize("command", _all_commands())
def test_cli_command_is_documented(command: str) -> None:
    assert f"`{command}" in _reference_text(), f"{command!r} is not documented in docs/reference/"


def _hook_names() -> list[str]:
    from invarlock_core import hookspecs

    names = [n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("invarlock_")]
    try:
        from veriscope_gate import hookspecs as veriscope_hookspecs
    except ImportError:  # pragma: no cover
        return names
    return names + [
        n
        for n, f in inspect.getmembers(veriscope_hookspecs, inspect.isfunction)
        if n.startswith("veriscope_")
    ]


@pytest.mark.parametrize("hook", _hook_names())
def test_plugin_hook_is_documented(hook: str) -> None:
    text = (REFERENCE / "plugins.md").read_text(encoding="utf-8")
    assert f"### `{hook}(" in text, f"hook {hook} is not documented in docs/reference/plugins.md"
