"""What signed webhooks (SendGrid's, Mailgun's) share: the signed time must be close to ours.

A signature proves who wrote a request, not when it was sent: without a bound on its timestamp,
anyone who once saw a request could post it again years later. ``[webhooks] timestamp_tolerance``
bounds it both ways (a clock ahead of ours is as suspect as one behind).
"""

from __future__ import annotations

import datetime as dt

__all__ = ["stale"]

#: Seconds since 1970 fit in 11 digits until the year 5138; more is no timestamp.
_DIGITS_MAX = 11


def stale(timestamp: str, received_at: dt.datetime, tolerance: int, retries: int = 0) -> str | None:
    """Why ``timestamp`` (decimal seconds since 1970, as signed) is not acceptable now, or None.

    ``tolerance`` is for clocks that differ; ``retries`` is how long the provider goes on resending
    a request with its first signature (Mailgun's 8 hours), which may be that much older.
    """
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= _DIGITS_MAX):
        return "timestamp is not a number of seconds"
    skew = int(timestamp) - received_at.timestamp()
    if skew > tolerance:
        return f"timestamp {int(skew)}s in the future"
    if -skew > tolerance + retries:
        return f"timestamp {int(-skew)}s old"
    return None
