"""The small rules every provider module applies to a webhook's fields.

Kept in one place so each provider reads the ids we sent, its times, and its clicked links the same
way: an id is a positive 64-bit integer or none, a time is UTC, and a link loses what may identify
the reader (its query, fragment and any user).
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit, urlunsplit

from newsletter.events.model import BadPayload

__all__ = ["DETAIL_MAX", "bare_link", "event_time", "ledger_id", "short_text"]

#: The longest string kept in an event's ``detail``.
DETAIL_MAX = 500
_ID_MAX = 2**63 - 1


def event_time(value: object, default: dt.datetime | None = None) -> dt.datetime:
    """An ISO 8601 time in UTC (naive means UTC); ``default`` (else now) when absent."""
    if value is None:
        return default or dt.datetime.now(dt.UTC)
    if not isinstance(value, str):
        raise BadPayload(f"bad time {str(value)[:40]!r}")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise BadPayload(f"bad time {value[:40]!r}") from None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def ledger_id(value: object) -> int | None:
    """An id we sent (``send_id``, ``delivery_id``), as a decimal string or an integer. Anything
    else (a message not sent through the ledger) is no id."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    return value if isinstance(value, int) and 0 < value <= _ID_MAX else None


def short_text(value: object) -> str | None:
    """A string field cut to :data:`DETAIL_MAX`; None for anything else."""
    return value[:DETAIL_MAX] if isinstance(value, str) else None


def bare_link(value: object) -> str | None:
    """A clicked URL without its query and fragment, which may carry a token or the address."""
    if not isinstance(value, str):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))[:DETAIL_MAX]
