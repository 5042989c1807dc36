"""UTC timestamps in the one format the artifacts use (ISO 8601 with a trailing ``Z``)."""

from __future__ import annotations

import datetime as dt
import re

__all__ = ["is_utc_timestamp", "utc_now"]

_ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")


def utc_now() -> str:
    """Now, as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def is_utc_timestamp(value: object) -> bool:
    """True when ``value`` is a valid ISO 8601 UTC timestamp string ending in ``Z``."""
    if not isinstance(value, str) or not _ISO_Z.match(value):
        return False
    try:
        dt.datetime.fromisoformat(value[:-1][:26])
    except ValueError:
        return False
    return True
