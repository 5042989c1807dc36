"""Evidence-pack benchmarks, measured side by side in one run.

1. Verify a generated pack of 1,000 real evaluation reports: the full verifier (schema, signature,
   checksums, digest references, nested core report verification of every report) and its
   integrity-only part, against the naive reference of re-verifying each report file with the core
   verifier and checking the checksums with ``sha256sum -c``.
2. Hashing throughput of the pack hasher against ``sha256sum`` on the same files (target: within
   1.5x), and against a plain sequential Python loop.

Run: ``.venv/bin/python benchmarks/bench_packs.py [--reports 1000]``. Needs torch only to produce the
one real report the pack is made of (a tiny GPT-2 built offline and evaluated once).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _timed(fn: Callable[[], Any], repeats: int = 3) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def _real_report(work: Path) -> Path:
    from invarlock_core.evaluation import EvaluationRequest, evaluate
    from invarlock_core.testing import tiny_model

    model = tiny_model("gpt2")
    outcome = evaluate(
        EvaluationRequest(
            baseline=model,
            subject=model,
            out=work / "eval",
            device="cpu",
            seq_len=64,
            stride=64,
            preview_windows=2,
            final_windows=8,
            bootstrap_replicates=200,
            batch_size=8,
            guards=("invariants", "spectral"),
        )
    )
    return outcome.report_path


def _make_pack(work: Path, report: Path, count: int) -> tuple[Path, str, float]:
    import json

    from invarlock_packs import ReportInput, build_pack, generate_key

    # evaluate wrote the runtime manifest its report binds; the pack carries it as it is.
    verdict = work / "final_verdict.json"
    verdict.write_text(json.dumps({"verdict": "PASS"}))
    signer = generate_key(work / "key.pem")
    inputs = [
        ReportInput(report, model=f"model-{i // 100}", edit=f"edit-{i % 100}", run="run1")
        for i in range(count)
    ]
    start = time.perf_counter()
    built = build_pack(
        work / "pack",
        final_verdict=verdict,
        reports=inputs,
        signing_key=work / "key.pem",
        metadata={"source_repo": {"commit": "0" * 40}},
    )
    return built.path, signer, time.perf_counter() - start


def _big_files(work: Path, count: int, size: int) -> list[Path]:
    directory = work / "big"
    directory.mkdir()
    paths = []
    for index in range(count):
        path = directory / f"blob{index:03d}.bin"
        path.write_bytes(os.urandom(size))
        paths.append(path)
    return paths


def _sha256sum(root: Path, rels: list[str]) -> None:
    subprocess.run(["sha256sum", "--", *rels], cwd=root, check=True, stdout=subprocess.DEVNULL)


def _sequential(root: Path, rels: list[str]) -> dict[str, str]:
    out = {}
    for rel in rels:
        with open(root / rel, "rb") as handle:
            out[rel] = hashlib.sha256(handle.read()).hexdigest()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=1000)
    parser.add_argument("--blobs", type=int, default=16, help="large files for the throughput test")
    parser.add_argument("--blob-mib", type=int, default=4)
    parser.add_argument("--cli-sample", type=int, default=8, help="reports timed through the CLI")
    parser.add_argument(
        "--core-sample", type=int, default=200, help="reports timed in-process alone"
    )
    args = parser.parse_args()

    from invarlock_core.report.verification import verify_report_file
    from invarlock_packs import verify_pack
    from invarlock_packs.checksums import hash_files

    with tempfile.TemporaryDirectory(prefix="bench-packs-") as tmp:
        work = Path(tmp)
        report = _real_report(work)
        pack, fingerprint, build_s = _make_pack(work, report, args.reports)
        files = sorted(p.relative_to(pack).as_posix() for p in pack.rglob("*") if p.is_file())
        print(
            f"pack: {args.reports} reports, {len(files)} files, "
            f"{sum((pack / f).stat().st_size for f in files) / 2**20:.1f} MiB; build {build_s:.2f} s "
            "(includes pre-verifying every report)"
        )

        full_s, result = _timed(
            lambda: verify_pack(pack, strict=True, expected_fingerprint=fingerprint), 1
        )
        assert result.ok, result.problems
        integrity_s, result = _timed(
            lambda: verify_pack(
                pack, strict=True, expected_fingerprint=fingerprint, report_assurance="off"
            )
        )
        assert result.ok, result.problems
        reports = [pack / f for f in files if f.endswith("evaluation.report.json")]

        core_sample = reports[: args.core_sample]

        def in_process() -> None:
            for path in core_sample:
                assert verify_report_file(path).ok

        core_s, _ = _timed(in_process, 1)
        core_s *= len(reports) / len(core_sample)
        sample = reports[: args.cli_sample]
        env = {**os.environ, "INVARLOCK_LOAD_PLUGINS": ""}

        def shell_style() -> None:
            subprocess.run(["sha256sum", "-c", "--quiet", "checksums.sha256"], cwd=pack, check=True)
            for path in sample:
                subprocess.run(
                    [sys.executable, "-m", "invarlock_core.cli", "verify", str(path)],
                    env=env,
                    check=True,
                    stdout=subprocess.DEVNULL,
                )

        cli_s, _ = _timed(shell_style, 1)
        shell_s = cli_s * len(reports) / len(sample)
        print(
            f"verify (full: strict, pinned, nested x{len(reports)}): {full_s:.2f} s "
            f"= {1000 * full_s / len(reports):.1f} ms/report"
        )
        print(
            f"  core report verifier alone (extrapolated from {len(core_sample)}): {core_s:.2f} s "
            f"= {1000 * core_s / len(reports):.1f} ms/report"
        )
        print(f"  integrity + signature only:                     {integrity_s:.2f} s")
        print(
            f"shell-style reference (sha256sum -c + one `invarlock verify` process per report, "
            f"extrapolated from {len(sample)}): {shell_s:.1f} s -> ours is {shell_s / full_s:.1f}x faster"
        )

        for label, root, rels in (
            (
                "pack files",
                pack,
                [f for f in files if f not in {"manifest.json", "manifest.signature.json"}],
            ),
            (
                f"{args.blobs} x {args.blob_mib} MiB blobs",
                work / "big",
                [p.name for p in _big_files(work, args.blobs, args.blob_mib * 2**20)],
            ),
        ):
            size = sum((root / r).stat().st_size for r in rels) / 2**20
            ours_s, digests = _timed(functools.partial(hash_files, root, rels))
            tool_s, _ = _timed(functools.partial(_sha256sum, root, rels))
            seq_s, seq = _timed(functools.partial(_sequential, root, rels))
            assert digests == seq
            print(
                f"hashing {label} ({size:.1f} MiB): ours {size / ours_s:.0f} MiB/s, "
                f"sha256sum {size / tool_s:.0f} MiB/s, sequential python {size / seq_s:.0f} MiB/s "
                f"-> ours/sha256sum time = {ours_s / tool_s:.2f}x (target <= 1.5x)"
            )
        shutil.rmtree(work / "big", ignore_errors=True)


if __name__ == "__main__":
    main()
