"""Verifying a report needs no ML stack: the verification path never imports torch."""

from __future__ import annotations

import subprocess
import sys


def test_report_verification_and_verdict_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import invarlock_core.report.verification, invarlock_core.evaluation.verdict, invarlock_core.evaluation\n"
        "import invarlock_core.cli.verify_command, invarlock_core.cli.evaluate_command\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
