"""The ``invarlock`` command line: a thin argparse layer over the library.

Sub-commands come from plugins through the ``invarlock_register_commands`` hook (the core's own
``evaluate``, ``verify``, ``plugins`` and ``schedule`` included). Expected failures print one line,
``error: <message>``, and exit with the error's code; anything else is a bug and keeps its
traceback (exit 3).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from invarlock_core.errors import EXIT_INTERNAL, InvarlockError, OneLineError, UsageError

__all__ = ["ArgumentParser", "build_parser", "main", "run_handled"]


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` (one line, exit 2) instead of printing usage."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _version() -> str:
    from invarlock_core import __version__

    return __version__


def build_parser() -> ArgumentParser:
    """The full ``invarlock`` parser, with every plugin's commands."""
    from invarlock_core.plugins import get_plugin_manager

    parser = ArgumentParser(
        prog="invarlock",
        description="Decide whether an edited checkpoint is still as good as its baseline.",
    )
    parser.add_argument("--version", action="version", version=f"invarlock {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    get_plugin_manager().hook.invarlock_register_commands(subparsers=subparsers)
    return parser


def run_handled(call: Callable[[], int], expected: type[OneLineError]) -> int:
    """Run a CLI body: ``expected`` failures print one line and exit with their ``exit_code``.

    Interrupts exit 130; anything else is a bug and keeps its traceback (exit 3). Shared by the
    ``invarlock`` and ``veriscope`` command lines.
    """
    try:
        return call()
    except expected as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # pragma: no cover - e.g. `invarlock plugins list | head`
        return 0
    except Exception:
        import traceback

        traceback.print_exc()
        print("error: internal error (a bug): please report it with the traceback above", file=sys.stderr)
        return EXIT_INTERNAL


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the exit code (``sys.exit(main())`` is the console script)."""

    def body() -> int:
        parser = build_parser()
        args = parser.parse_args(argv)
        handler = getattr(args, "handler", None)
        if handler is None:
            parser.print_help(sys.stderr)
            return 2
        code: int = handler(args)
        return code

    return run_handled(body, InvarlockError)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
