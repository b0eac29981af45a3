"""``ProviderEvent``: what one provider's webhook event means, whoever sent it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from newsletter.errors import BadInput
from newsletter.store.models import EventKind

__all__ = ["BadPayload", "EventKind", "ProviderEvent"]


class BadPayload(BadInput):
    """A webhook body that is not the JSON a provider sends: answered with 400, nothing stored."""


@dataclass(frozen=True)
class ProviderEvent:
    """One event as the store needs it.

    ``email`` lives only in memory, long enough to suppress or unsubscribe the address; the store
    keeps its hash. ``event_id`` is unique per provider and stable across the provider's retries,
    so a replayed webhook is recognised.
    """

    provider: str
    event_id: str
    kind: EventKind
    occurred_at: dt.datetime
    delivery_id: int | None = None
    send_id: int | None = None
    email: str | None = field(default=None, repr=False)
    #: Small, non-identifying facts: the bounce type and description, the clicked URL.
    detail: dict[str, Any] = field(default_factory=dict)
