"""Run a task's Python entry point: ``python -m invarlock_core.scheduling.entry MODULE:FUNC PARAMS.json``.

The function is called with the params mapping; ``None`` or ``0`` means success, another integer is
the exit status. An :class:`~invarlock_core.errors.InvarlockError` prints one line and exits with its
code; anything else keeps its traceback (exit 1), which the failure classifier reads.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from invarlock_core.errors import EXIT_USAGE, InvarlockError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or ":" not in args[0]:
        print(
            "usage: python -m invarlock_core.scheduling.entry MODULE:FUNCTION PARAMS.json",
            file=sys.stderr,
        )
        return EXIT_USAGE
    module_name, func_name = args[0].split(":", 1)
    params = json.loads(Path(args[1]).read_text(encoding="utf-8"))
    func = getattr(importlib.import_module(module_name), func_name)
    try:
        result = func(params)
    except InvarlockError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
