"""What both built-in runners share: argument parsing of gate options and signal capture."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from veriscope_gate.errors import VeriscopeError, VeriscopeUsageError
from veriscope_gate.records import GateRecord

__all__ = [
    "StopFlag",
    "add_gate_arguments",
    "add_model_arguments",
    "exit_for_signal",
    "fail_line",
    "format_gate",
    "parse_overrides",
    "run_main",
]


class StopFlag:
    """Turns SIGINT/SIGTERM into a flag the training loop polls (best-effort finalisation)."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self.signum: int | None = None
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        print(f"veriscope-runner: received {self.signal_name}, finalising", flush=True)

    def __call__(self) -> bool:
        return self.signum is not None


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` gate-control overrides; values are JSON when they parse, else strings."""
    out: dict[str, Any] = {}
    for item in items:
        key, eq, raw = item.partition("=")
        if not eq or not key:
            raise VeriscopeUsageError(f"--override expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--outdir", required=True, help="capsule directory")
    parser.add_argument("--run_id", default=None, help="join key (the wrapper passes one)")
    parser.add_argument("--gate-preset", "--gate_preset", dest="gate_preset", default="tuned_v0")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="override one gate control (repeatable)")
    parser.add_argument("--stop-on-fail", action="store_true", help="stop training on a FAIL")
    parser.add_argument("--seed", type=int, default=0)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Model and optimiser knobs shared by the built-in runners."""
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--block_size", type=int, default=64)
    parser.add_argument("--n_layer", type=int, default=2)
    parser.add_argument("--n_embd", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)


def run_main(
    parser: argparse.ArgumentParser,
    run: Callable[[argparse.Namespace, StopFlag], int],
    argv: Sequence[str] | None,
) -> int:
    """Parse, install the signal flag, run; expected failures print one line and return 2."""
    args = parser.parse_args(argv)
    stop = StopFlag()
    try:
        return run(args, stop)
    except VeriscopeError as exc:
        return fail_line(str(exc))


def format_gate(record: GateRecord) -> str:
    a = record.audit
    dw = f"{a.worst_DW:.4f}" if a.worst_DW is not None else "-"
    eps = f"{a.eps_eff:.4f}" if a.eps_eff is not None else "-"
    extra = f" causes={','.join(a.causes)}" if a.causes else ""
    return (f"veriscope-gate: iter={record.iter} decision={record.decision} reason={a.reason} "
            f"worst_DW={dw} eps_eff={eps}{extra}")


def exit_for_signal(flag: StopFlag) -> int:
    return 128 + flag.signum if flag.signum is not None else 0


def fail_line(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return 2
