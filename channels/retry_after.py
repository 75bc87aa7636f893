"""``Retry-After`` (RFC 9110 §10.2.3): how long a provider asks us to wait, capped.

Pure: ``now`` is an argument. Every adapter that reads the header uses this one parser.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["MAX_RETRY_AFTER_S", "parse_retry_after"]

# A receiver asking for more than a day is broken or hostile; a day is what we grant at most.
MAX_RETRY_AFTER_S = 86_400.0


def parse_retry_after(value: str | None, now: datetime, *, cap_s: float = MAX_RETRY_AFTER_S) -> float | None:
    """Seconds to wait, from delta-seconds (``"120"``) or an HTTP-date (a date in the past is 0),
    at most ``cap_s``; ``None`` when the header is absent or not one of those two forms."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), cap_s)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - now).total_seconds()), cap_s)
