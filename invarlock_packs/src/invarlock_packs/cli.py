"""``invarlock pack build|verify|inspect|keygen|html``, registered through the commands hook.

Environment defaults (flags win): ``PACK_SIGNING_KEY``, ``PACK_SIGN_MANIFEST`` (1: sign, with a
one-off in-memory key when no key is given; 0: unsigned), ``PACK_SKIP_HTML``, ``PACK_REQUIRE_PASS``,
``PACK_RELEASE_REVIEW``, ``PACK_VERIFY_PROFILE``, ``PACK_REPORT_ASSURANCE``, ``PACK_STRICT_MODE``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from invarlock_core.cli.arg_types import positive_int
from invarlock_core.errors import UsageError
from invarlock_core.hookspecs import hookimpl
from invarlock_packs import run_command

__all__ = ["invarlock_register_commands", "register"]

_TRUE = {"1", "true", "yes", "on"}


def _env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    return default if value is None or not value.strip() else value.strip().lower() in _TRUE


def _name_path(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, Path(path)


@hookimpl
def invarlock_register_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``pack`` command group."""
    register(subparsers)


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``pack`` and its sub-commands to ``subparsers``."""
    pack = subparsers.add_parser("pack", help="build, sign, verify and inspect evidence packs")
    sub = pack.add_subparsers(dest="pack_command", metavar="ACTION", required=True)
    run_command.register(sub)

    build = sub.add_parser("build", help="assemble a signed evidence pack from existing artifacts")
    build.add_argument(
        "out", type=Path, nargs="?", help="pack directory to create (default $PACK_DIR)"
    )
    build.add_argument("--final-verdict", type=Path, required=True, help="final_verdict.json")
    build.add_argument(
        "--report",
        type=Path,
        action="append",
        required=True,
        dest="reports",
        help="an evaluation.report.json (repeat); runtime.manifest.json must be beside it",
    )
    build.add_argument("--source-repo", type=Path, help="metadata/source_repo.json to include")
    build.add_argument(
        "--source-checkout",
        type=Path,
        help="collect source provenance from this git checkout (or its snapshot marker)",
    )
    build.add_argument(
        "--environment", type=Path, help="environment.json (default: collected here)"
    )
    build.add_argument(
        "--scenarios", type=Path, help="scenarios.json the edit metadata must agree with"
    )
    build.add_argument(
        "--metadata",
        type=_name_path,
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="another metadata JSON, written to metadata/NAME.json",
    )
    build.add_argument(
        "--material",
        type=_name_path,
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a digest-backed input file (e.g. model_revisions=revisions.json)",
    )
    build.add_argument(
        "--summary", type=Path, action="append", default=[], help="a results/ summary JSON"
    )
    build.add_argument("--config-source", type=Path, help="the configuration the suite ran with")
    build.add_argument(
        "--signing-key",
        type=Path,
        default=None,
        help="Ed25519 private key PEM (default $PACK_SIGNING_KEY)",
    )
    build.add_argument(
        "--unsigned", action="store_true", help="do not sign (verify will fail closed)"
    )
    build.add_argument(
        "--profile", default=None, help="report verification profile ($PACK_VERIFY_PROFILE)"
    )
    build.add_argument(
        "--allow-missing-runtime-manifests",
        action="store_true",
        help="accept reports without runtime.manifest.json (lower evidence)",
    )
    build.add_argument(
        "--require-pass", action="store_true", help="fail unless the verdict is PASS"
    )
    build.add_argument(
        "--release-review",
        action="store_true",
        help="require PASS, a signing key and runtime manifests",
    )
    build.add_argument("--skip-html", action="store_true", help="do not write index.html")
    build.add_argument("--overwrite", action="store_true", help="replace an existing pack")
    build.add_argument("--json", action="store_true", help="machine-readable summary")
    build.set_defaults(handler=_build)

    verify = sub.add_parser("verify", help="verify a pack offline (exit 0 ok, 2-7 failures)")
    verify.add_argument("pack", type=Path)
    verify.add_argument(
        "--strict",
        action="store_true",
        default=None,
        help="also fail on files not listed in checksums.sha256 ($PACK_STRICT_MODE)",
    )
    verify.add_argument("--expected-fingerprint", help="pin the signer: sha256:<64 hex>")
    verify.add_argument(
        "--trust-store",
        type=Path,
        help="JSON trust store (default ~/.config/invarlock/trusted-signers.json)",
    )
    verify.add_argument(
        "--report-assurance",
        choices=("off", "report", "strict"),
        default=None,
        help="nested report verification ($PACK_REPORT_ASSURANCE, default report)",
    )
    verify.add_argument(
        "--profile", default=None, help="report verification profile ($PACK_VERIFY_PROFILE)"
    )
    verify.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="processes for nested report verification (default: one per CPU, max 8)",
    )
    verify.add_argument("--json", action="store_true", help="list every check as JSON")
    verify.set_defaults(handler=_verify)

    inspect = sub.add_parser("inspect", help="read-only summary of a pack (no nested verification)")
    inspect.add_argument("pack", type=Path)
    inspect.add_argument("--json", action="store_true")
    inspect.set_defaults(handler=_inspect)

    keygen = sub.add_parser(
        "keygen", help="generate an Ed25519 signing key (mode 0600) and its .pub"
    )
    keygen.add_argument("path", type=Path)
    keygen.add_argument("--force", action="store_true", help="replace an existing key")
    keygen.add_argument("--json", action="store_true")
    keygen.set_defaults(handler=_keygen)

    page = sub.add_parser("html", help="write the self-contained HTML page of a pack")
    page.add_argument("pack", type=Path)
    page.add_argument(
        "-o", "--output", type=Path, help="output file (default <pack>.html beside the pack)"
    )
    page.set_defaults(handler=_html)


def _signing_key(args: argparse.Namespace) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if args.unsigned or not _env_flag("PACK_SIGN_MANIFEST", default=True):
        if args.signing_key is not None or args.release_review:
            raise UsageError("--unsigned (or PACK_SIGN_MANIFEST=0) conflicts with signing options")
        return None
    key = args.signing_key or (
        Path(os.environ["PACK_SIGNING_KEY"]) if os.environ.get("PACK_SIGNING_KEY") else None
    )
    return key if key is not None else Ed25519PrivateKey.generate()


def _build(args: argparse.Namespace) -> int:
    from invarlock_core.cli.output import print_json
    from invarlock_core.serialization import unstructure
    from invarlock_packs.build import build_pack
    from invarlock_packs.provenance import collect_source_repo

    if args.out is None:
        if not os.environ.get("PACK_DIR"):
            raise UsageError("give the pack directory to create (or set PACK_DIR)")
        args.out = Path(os.environ["PACK_DIR"])
    if args.source_repo and args.source_checkout:
        raise UsageError("--source-repo and --source-checkout are mutually exclusive")
    metadata: dict[str, Any] = dict(args.metadata)
    for name, value in (
        ("source_repo", args.source_repo),
        ("environment", args.environment),
        ("scenarios", args.scenarios),
    ):
        if value is not None:
            metadata[name] = value
    if args.source_checkout is not None:
        metadata["source_repo"] = collect_source_repo(args.source_checkout)
    release_review = args.release_review or _env_flag("PACK_RELEASE_REVIEW")
    args.release_review = release_review
    signing_key = _signing_key(args)
    built = build_pack(
        args.out,
        final_verdict=args.final_verdict,
        reports=args.reports,
        signing_key=signing_key,
        metadata=metadata,
        materials=dict(args.material),
        summaries=args.summary,
        config_source=args.config_source,
        invocation=["invarlock", *sys.argv[1:]]
        if sys.argv and sys.argv[0]
        else ["invarlock", "pack", "build"],
        profile=args.profile or os.environ.get("PACK_VERIFY_PROFILE") or None,
        require_runtime_manifests=not args.allow_missing_runtime_manifests,
        require_pass=args.require_pass or _env_flag("PACK_REQUIRE_PASS"),
        release_review=release_review,
        html=not (args.skip_html or _env_flag("PACK_SKIP_HTML")),
        overwrite=args.overwrite,
    )
    if signing_key is not None and not isinstance(signing_key, Path):
        print(
            "note: no signing key given; signed with a one-off key that was never stored "
            "(pin packs across builds with a key from `invarlock pack keygen`)",
            file=sys.stderr,
        )
    if args.json:
        print_json(unstructure(built))
    else:
        print(
            f"built {built.path}: verdict {built.verdict}, {built.report_count} reports, "
            f"{built.file_count} files, evidence level {built.evidence_level}"
        )
        print(f"signer: {built.signing_key_fingerprint or 'none (unsigned)'}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from invarlock_core.cli.output import print_json
    from invarlock_core.serialization import unstructure
    from invarlock_packs.verify import REPORT_ASSURANCE_MODES, verify_pack

    assurance = args.report_assurance or os.environ.get("PACK_REPORT_ASSURANCE") or "report"
    if assurance not in REPORT_ASSURANCE_MODES:
        raise UsageError(
            f"PACK_REPORT_ASSURANCE must be one of {', '.join(REPORT_ASSURANCE_MODES)}"
        )
    result = verify_pack(
        args.pack,
        strict=args.strict if args.strict is not None else _env_flag("PACK_STRICT_MODE"),
        expected_fingerprint=args.expected_fingerprint,
        trust_store=args.trust_store,
        report_assurance=assurance,
        profile=args.profile or os.environ.get("PACK_VERIFY_PROFILE") or None,
        workers=args.workers,
    )
    if args.json:
        data = unstructure(result)
        data["problems"] = list(result.problems)
        print_json(data)
        return result.exit_code
    for check in result.checks:
        mark = "ok  " if check.ok else "FAIL"
        print(f"{mark} {check.name}: {check.detail}")
    if result.ok:
        pinned = "pinned signer" if result.signer_pinned else "signer NOT pinned"
        print(f"verified {result.pack_dir} ({pinned}: {result.signer_fingerprint})")
    else:
        print(
            f"error: pack verification failed (exit {result.exit_code}): {result.problems[0]}",
            file=sys.stderr,
        )
    return result.exit_code


def _inspect(args: argparse.Namespace) -> int:
    from invarlock_core.cli.output import print_json
    from invarlock_core.serialization import unstructure
    from invarlock_packs.inspect_pack import inspect_pack

    info = inspect_pack(args.pack)
    if args.json:
        print_json(unstructure(info))
        return 0
    print(
        f"pack {info.pack_dir}: format {info.format}, manifest {'valid' if info.manifest_valid else 'INVALID'}"
    )
    print(
        f"verdict {info.verdict}, evidence level {info.evidence_level}, "
        f"signed {'yes, ' + str(info.signing_key_fingerprint) if info.signed else 'no'}"
    )
    print(
        f"files: {info.files_listed} listed, {info.files_present} present, "
        f"{len(info.missing_files)} missing, {len(info.unlisted_files)} unlisted"
    )
    print(f"provenance references: {len(info.provenance_refs)}; reports: {len(info.reports)}")
    for entry in info.reports:
        runtime = "runtime manifest" if entry.has_runtime_manifest else "NO runtime manifest"
        print(f"  {entry.path} ({entry.category or 'unknown'}, {runtime})")
    print(
        "strict-ready"
        if info.strict_ready
        else "not strict-ready: " + "; ".join(info.strict_blockers)
    )
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from invarlock_core.cli.output import print_json
    from invarlock_core.serialization import unstructure
    from invarlock_packs.signing import KeyPair, generate_key, public_key_path

    signer = generate_key(args.path, overwrite=args.force)
    pair = KeyPair(args.path, public_key_path(args.path), signer)
    if args.json:
        print_json(unstructure(pair))
    else:
        print(f"private key: {pair.private_key_path} (mode 0600, keep it secret)")
        print(f"public key:  {pair.public_key_path}")
        print(f"fingerprint: {pair.fingerprint}")
    return 0


def _html(args: argparse.Namespace) -> int:
    from invarlock_core.errors import InputError
    from invarlock_core.output_checks import output_problem
    from invarlock_packs.html_export import export_pack_html

    output = args.output or args.pack.resolve().with_suffix(".html")
    problem = output_problem(output)
    if problem:
        raise InputError(problem)
    try:
        written = export_pack_html(args.pack, output)
    except OSError as exc:
        raise InputError(f"cannot write {output}: {exc.strerror or exc}") from None
    print(f"wrote {written}")
    return 0
