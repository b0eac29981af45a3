"""Reading one field of a provider's event, the same careful way for every provider.

A webhook body is a stranger's JSON until parsed: these helpers accept only the types and ranges we
could have sent or a provider documents, cut text to a bounded length, and keep addresses, tokens
and query strings out of what is stored (``ProviderEvent.detail``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from urllib.parse import urlsplit, urlunsplit

from newsletter.events.model import BadPayload

__all__ = ["DETAIL_MAX", "EVENT_ID_MAX", "epoch_time", "event_id", "int_id", "iso_time", "link", "text"]

#: The longest text kept in an event's detail.
DETAIL_MAX = 500
#: ``events.provider_event_id`` is 128 characters.
EVENT_ID_MAX = 128
_ID_MAX = 2**63 - 1
#: Seconds since 1970 that a provider may report: up to the year 2100.
_EPOCH_MAX = 4_102_444_800
#: Anything shaped like an address, in a bounce message quoting the receiving server.
_ADDRESS = re.compile(r"[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+")


def int_id(value: object) -> int | None:
    """A ``send_id`` or ``delivery_id`` we sent (decimal strings; some providers hand back numbers).

    Anything else (a message we did not send through the ledger) is no id.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    return value if isinstance(value, int) and 0 < value <= _ID_MAX else None


def text(value: object) -> str | None:
    """A string, cut to :data:`DETAIL_MAX`, with any address in it replaced: a bounce reason
    often quotes the recipient (``550 5.1.1 <reader@example.org>: user unknown``). NUL characters
    go: PostgreSQL's ``jsonb`` refuses them, and the provider would retry the request forever."""
    if not isinstance(value, str):
        return None
    return _ADDRESS.sub("<address>", value[: DETAIL_MAX * 2].replace("\x00", ""))[:DETAIL_MAX]


def link(value: object) -> str | None:
    """A clicked URL without its query and fragment, which may carry a token or the address."""
    if not isinstance(value, str):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))[:DETAIL_MAX]


def epoch_time(value: object) -> dt.datetime:
    """Seconds since 1970 (an int or a float with microseconds), in UTC."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= _EPOCH_MAX:
        raise BadPayload(f"bad timestamp {str(value)[:40]!r}")
    return dt.datetime.fromtimestamp(value, dt.UTC)


def iso_time(value: object, default: dt.datetime | None = None) -> dt.datetime:
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


def event_id(value: object, *, suffix: str = "") -> str:
    """A provider's event id as stored: the id + ``suffix``, or the id's SHA-256 when that would
    not fit (a hash still tells replays apart; a cut-off id could merge two events)."""
    if not isinstance(value, str) or not value:
        raise BadPayload("event without an id")
    if len(value) + len(suffix) <= EVENT_ID_MAX:
        return value + suffix
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest() + suffix
