"""The evaluation report: writing it (:mod:`.document`), rendering it (:mod:`.markdown`) and
checking it again from its own numbers (:mod:`.verification`).

The names below are the document API; ``invarlock verify`` lives in :mod:`.verification`.
"""

from __future__ import annotations

from invarlock_core.report.document import (
    MARKDOWN_FILENAME,
    REPORT_FILENAME,
    RUNTIME_MANIFEST_FILENAME,
    SCHEMA_NAME,
    TIMING_FILENAME,
    compute_digests,
    guard_outcomes,
    guard_result_json,
    jsonable,
    load_report,
    report_digest,
    window_scores,
    write_report,
)

__all__ = [
    "MARKDOWN_FILENAME",
    "REPORT_FILENAME",
    "RUNTIME_MANIFEST_FILENAME",
    "SCHEMA_NAME",
    "TIMING_FILENAME",
    "compute_digests",
    "guard_outcomes",
    "guard_result_json",
    "jsonable",
    "load_report",
    "report_digest",
    "window_scores",
    "write_report",
]
