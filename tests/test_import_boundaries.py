"""Import boundaries: the light entry points never import torch or transformers."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = """
import sys
import {module}
heavy = sorted(m for m in ("torch", "transformers", "datasets", "ray") if m in sys.modules)
print(",".join(heavy))
"""


@pytest.mark.parametrize(
    "module",
    ["invarlock_core", "invarlock_core.plugins", "invarlock_core.cli", "invarlock_packs", "veriscope_gate"],
)
def test_light_imports(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHECK.format(module=module)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "", f"{module} imported {result.stdout.strip()}"
