"""RFC 3339 UTC timestamps as the wire contract writes them.

Only one spelling is accepted: ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``. Offsets other than
``Z``, missing seconds, and lowercase letters are refused, so that two implementations
never disagree on what a string means.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")


def parse_time(value: object) -> datetime:
    """Parse ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` into an aware UTC datetime.

    Raises ValueError for anything else (with the offending value in the message).
    """
    if not isinstance(value, str) or _RFC3339_UTC.fullmatch(value) is None:
        raise ValueError(f"not an RFC 3339 UTC time (YYYY-MM-DDTHH:MM:SSZ): {value!r:.60}")
    try:
        return datetime.fromisoformat(value)  # Python 3.11 reads "Z" as UTC
    except ValueError:
        raise ValueError(f"not a valid calendar time: {value!r:.60}") from None


def format_time(value: datetime) -> str:
    """Write an aware datetime as RFC 3339 UTC with ``Z`` (microseconds only when set).

    Raises ValueError for a naive datetime.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("refusing to format a naive datetime: pass an aware UTC time")
    utc = value.astimezone(UTC)
    if utc.microsecond:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def require_aware(name: str, value: datetime) -> None:
    """Raises ValueError when a datetime passed in by a caller is naive."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime (UTC)")
