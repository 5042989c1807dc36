"""Ed25519 keys and the detached ``manifest.signature.json`` bundle.

The signature covers the exact bytes of ``manifest.json``. A signer is named by its fingerprint,
``"sha256:" + sha256(raw 32-byte public key)``. Private keys are only ever written by
:func:`generate_key`, to the path it is given, with mode 0600.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from pathlib import Path
from typing import Any, Final

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from invarlock_core.atomic import atomic_write_bytes
from invarlock_core.canonical import prefixed, sha256_hex
from invarlock_core.errors import InputError, UsageError
from invarlock_core.output_checks import output_problem
from invarlock_packs.layout import SIGNATURE_FORMAT

__all__ = [
    "FINGERPRINT_PATTERN",
    "KeyPair",
    "SignatureCheck",
    "check_signature_bundle",
    "fingerprint",
    "generate_key",
    "load_private_key",
    "normalize_fingerprint",
    "public_key_path",
    "sign_manifest",
]

FINGERPRINT_PATTERN: Final = re.compile(r"^sha256:[0-9a-f]{64}$")
_MAX_KEY_BYTES: Final = 64 * 1024


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """``"sha256:<hex>"`` of the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return prefixed(sha256_hex(raw))


def normalize_fingerprint(value: str) -> str:
    """Lower-case ``value`` and check it is ``sha256:<64 hex>``; raise UsageError otherwise."""
    candidate = value.strip().lower()
    if not FINGERPRINT_PATTERN.match(candidate):
        raise UsageError(f"not a signer fingerprint (expected sha256:<64 hex>): {value!r}")
    return candidate


def public_key_path(private_key_path: Path) -> Path:
    """Where :func:`generate_key` puts the public half: ``<name>.pub`` beside the private key."""
    return private_key_path.with_name(private_key_path.name + ".pub")


@attrs.frozen
class KeyPair:
    """A key pair on disk, as ``invarlock pack keygen --json`` describes it."""

    private_key_path: Path
    public_key_path: Path
    fingerprint: str


def generate_key(path: str | Path, *, overwrite: bool = False) -> str:
    """Write a new Ed25519 private key (PKCS#8 PEM, mode 0600) and its public key beside it.

    The public key goes to ``<path>.pub`` (:func:`public_key_path`, SubjectPublicKeyInfo PEM).
    Refuses to replace an existing key unless ``overwrite`` is true. Returns the signer
    fingerprint ``sha256:<hex>`` to hand to reviewers.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise InputError(f"{target} already exists; refusing to overwrite a key (use --force)")
    if target.is_dir():
        raise InputError(f"{target} is a directory")
    for path in (target, public_key_path(target)):
        problem = output_problem(path)
        if problem:
            raise InputError(problem)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # atomic_write_bytes stages through mkstemp, which creates the file with mode 0600; the
    # chmod makes the mode explicit in case a platform's mkstemp differs.
    atomic_write_bytes(target, pem)
    os.chmod(target, 0o600)
    public = key.public_key()
    pub_path = public_key_path(target)
    atomic_write_bytes(
        pub_path,
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    os.chmod(pub_path, 0o644)
    return fingerprint(public)


def load_private_key(path: str | Path, *, password: bytes | None = None) -> Ed25519PrivateKey:
    """Load an Ed25519 private key from a PEM file; one-line InputError when it is not one."""
    source = Path(path)
    try:
        with open(source, "rb") as handle:
            data = handle.read(_MAX_KEY_BYTES + 1)
    except OSError as exc:
        raise InputError(f"cannot read signing key {source}: {exc.strerror}") from exc
    if len(data) > _MAX_KEY_BYTES:
        raise InputError(f"signing key {source} is too large to be a PEM key")
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError) as exc:
        raise InputError(f"signing key {source} is not a readable PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"signing key {source} is not an Ed25519 key")
    return key


def sign_manifest(manifest_bytes: bytes, key: Ed25519PrivateKey) -> dict[str, Any]:
    """The ``manifest.signature.json`` bundle for ``manifest_bytes``."""
    public = key.public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")
    return {
        "format": SIGNATURE_FORMAT,
        "algorithm": "ed25519",
        "signing_key_fingerprint": fingerprint(public),
        "public_key": {"encoding": "pem", "value": pem},
        "signature": {
            "encoding": "base64",
            "value": base64.b64encode(key.sign(manifest_bytes)).decode("ascii"),
        },
    }


@attrs.frozen
class SignatureCheck:
    """Outcome of checking a signature bundle against manifest bytes."""

    ok: bool
    fingerprint: str | None
    detail: str


def check_signature_bundle(bundle: Any, manifest_bytes: bytes) -> SignatureCheck:
    """Check a parsed ``manifest.signature.json`` against the manifest's exact bytes.

    The fingerprint is recomputed from the embedded public key and must equal the one the bundle
    declares; the signature must verify. Never raises for bad input: returns ``ok=False``.
    """
    if not isinstance(bundle, dict):
        return SignatureCheck(False, None, "signature bundle is not a JSON object")
    if bundle.get("format") != SIGNATURE_FORMAT:
        return SignatureCheck(False, None, f"signature bundle format is not {SIGNATURE_FORMAT}")
    if bundle.get("algorithm") != "ed25519":
        return SignatureCheck(False, None, "signature algorithm is not ed25519")
    public_key = bundle.get("public_key")
    signature = bundle.get("signature")
    declared = bundle.get("signing_key_fingerprint")
    if not (isinstance(public_key, dict) and public_key.get("encoding") == "pem"):
        return SignatureCheck(False, None, "public key is not PEM-encoded")
    if not (isinstance(signature, dict) and signature.get("encoding") == "base64"):
        return SignatureCheck(False, None, "signature is not base64-encoded")
    pem, sig_text = public_key.get("value"), signature.get("value")
    if not isinstance(pem, str) or not isinstance(sig_text, str) or not isinstance(declared, str):
        return SignatureCheck(False, None, "signature bundle fields are missing")
    try:
        loaded = serialization.load_pem_public_key(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        return SignatureCheck(False, None, f"public key cannot be loaded: {exc}")
    if not isinstance(loaded, Ed25519PublicKey):
        return SignatureCheck(False, None, "public key is not an Ed25519 key")
    actual = fingerprint(loaded)
    if declared != actual:
        return SignatureCheck(False, actual, "declared fingerprint does not match the public key")
    try:
        raw_signature = base64.b64decode(sig_text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return SignatureCheck(False, actual, "signature is not valid base64")
    try:
        loaded.verify(raw_signature, manifest_bytes)
    except InvalidSignature:
        return SignatureCheck(False, actual, "signature does not match manifest.json")
    return SignatureCheck(True, actual, f"manifest.json is signed by {actual}")
