"""The ``veriscope`` command line (being implemented)."""

from __future__ import annotations

import sys


def main() -> int:
    print("error: veriscope is not available yet", file=sys.stderr)
    return 2
