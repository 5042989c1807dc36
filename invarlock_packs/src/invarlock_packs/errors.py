"""Pack failures and the verify exit codes they map to, in one place.

The codes follow the published evidence-pack contract: 0 verified, 2 usage, 3 missing pack or
required files, 4 manifest format or schema, 5 signature, 6 integrity, 7 nested report
verification. Each failure class below carries its code, so the CLI's one-line error handling
prints the message and exits with the right status.
"""

from __future__ import annotations

from typing import Final, Literal

from invarlock_core.errors import InvarlockError

__all__ = [
    "CATEGORY_EXIT_CODES",
    "EXIT_FORMAT",
    "EXIT_INTEGRITY",
    "EXIT_MISSING",
    "EXIT_REPORTS",
    "EXIT_SIGNATURE",
    "CheckCategory",
    "PackFormatError",
    "PackIntegrityError",
    "PackMissingError",
    "PackReportError",
    "PackSignatureError",
    "VerdictRequirementError",
]

EXIT_MISSING: Final = 3
EXIT_FORMAT: Final = 4
EXIT_SIGNATURE: Final = 5
EXIT_INTEGRITY: Final = 6
EXIT_REPORTS: Final = 7

CheckCategory = Literal["files", "format", "signature", "integrity", "reports", "info"]
"""What a verification check is about; it decides the exit code when the check fails."""

CATEGORY_EXIT_CODES: Final[dict[str, int]] = {
    "files": EXIT_MISSING,
    "format": EXIT_FORMAT,
    "signature": EXIT_SIGNATURE,
    "integrity": EXIT_INTEGRITY,
    "reports": EXIT_REPORTS,
    "info": 0,
}
"""Exit code of a failed check, by category. Lower codes take precedence when several fail."""


class PackMissingError(InvarlockError):
    """The pack directory or one of its required files is missing."""

    exit_code = EXIT_MISSING


class PackFormatError(InvarlockError):
    """``manifest.json`` is not a valid evidence-pack-v1 manifest."""

    exit_code = EXIT_FORMAT


class PackSignatureError(InvarlockError):
    """The manifest signature is missing, invalid, or from a signer that is not trusted."""

    exit_code = EXIT_SIGNATURE


class PackIntegrityError(InvarlockError):
    """Pack content does not match the sealed checksums, or is unsafe to read."""

    exit_code = EXIT_INTEGRITY


class PackReportError(InvarlockError):
    """A bundled evaluation report failed verification."""

    exit_code = EXIT_REPORTS


class VerdictRequirementError(InvarlockError):
    """A build requirement on the final verdict (``--require-pass``) is not met."""

    exit_code = 1
