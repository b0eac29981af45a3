"""A subscriber's status, apart from the tables: the CLI offers these values as ``--status``
choices without importing SQLAlchemy, and ``models`` stores them in the ``subscribers`` table."""

from __future__ import annotations

import enum

__all__ = ["SubscriberStatus"]


class SubscriberStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
