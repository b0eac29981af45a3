"""A send's report: counts turned into rates over the right denominator, and the ``--json`` document.

Denominators, the one rule every output follows:

- delivered, bounced (hard, soft), complained and unsubscribed are rates over the *accepted*
  recipients: those the provider took, the only ones it can tell us anything about;
- opened and clicked are rates over the *delivered* recipients when the provider reports
  deliveries for this send, and over the accepted ones when it does not (the outbox, SMTP, a
  provider whose delivery webhook is off). ``of`` in each metric names the denominator used.

Every rate counts *recipients*: a reader who opened five times is one opener; ``events`` keeps
the five opens. A rate whose denominator is 0 (a send with no accepted recipient) is ``null``.

Deliveries, opens and clicks are reported only "where the provider reports them": with no event
of that kind for the send, the metric is ``null`` ("not reported"), not 0%, since open tracking
that is off and a newsletter nobody opened look the same otherwise. Bounces, complaints and
unsubscribes are always numbers: zero of them is the news one hopes for.

The complaint rate is judged against the bulk-sender rules Gmail and Yahoo enforce since
February 2024: a spam-complaint rate reaching 0.3% puts delivery at risk, and Gmail advises
staying below 0.1%. (Gmail measures over mail delivered to inboxes, so ours, over accepted, is
a lower bound.)

The JSON document (``newsletter report --json`` prints a list of these, one per send, by id)::

    {"send": {"id", "issue_file", "issue_date", "segment", "subject", "provider", "state",
              "started_at", "finished_at"},
     "recipients": {"total": int, "accepted": int, "by_state": {state: int for every state}},
     "metrics": {kind: null | {"recipients": int, "events": int, "rate": float | null,
                               "of": "accepted" | "delivered"}
                 for kind in delivered, bounced_hard, bounced_soft, complained, unsubscribed,
                 opened, clicked},
     "complaints": {"level": "ok" | "warning" | "over_limit", "warning": 0.001, "limit": 0.003},
     "hard_bounces": {"level": "ok" | "warning" | "over_limit", "warning": 0.02, "limit": 0.05},
     "hourly": {"start": timestamp, "hours": int,
                "counts": {kind: [int per hour]}, "later": {kind: int}}}

Rates are fractions (0.0125 is 1.25%) rounded to six places; timestamps are ISO 8601 in UTC.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from newsletter.store.models import EventKind
from newsletter.store.reports import SendFigures

__all__ = [
    "COMPLAINT_LIMIT",
    "COMPLAINT_WARNING",
    "HARD_BOUNCE_LIMIT",
    "HARD_BOUNCE_WARNING",
    "LABELS",
    "METRICS",
    "ComplaintLevel",
    "Metric",
    "SendReport",
    "level",
]

#: Gmail and Yahoo's bulk-sender limit (2024): a complaint rate that reaches it hurts delivery.
COMPLAINT_LIMIT = 0.003
#: Gmail's advice: keep complaints below 0.1%; above it the report warns.
COMPLAINT_WARNING = 0.001
#: Hard bounces over accepted: above 2% a list has stale addresses (the common advice of ESPs);
#: at 5% providers review the account (SES's review threshold; Postmark pauses sending near 10%).
HARD_BOUNCE_WARNING = 0.02
HARD_BOUNCE_LIMIT = 0.05

#: The reported event kinds, in the order every output lists them.
METRICS = (
    EventKind.DELIVERED,
    EventKind.BOUNCED_HARD,
    EventKind.BOUNCED_SOFT,
    EventKind.COMPLAINED,
    EventKind.UNSUBSCRIBED,
    EventKind.OPENED,
    EventKind.CLICKED,
)
#: Kinds a provider may not report at all (delivery webhooks off, no open or click tracking).
MAYBE_UNREPORTED = frozenset({EventKind.DELIVERED, EventKind.OPENED, EventKind.CLICKED})
#: Engagement: over delivered recipients when deliveries are reported.
ENGAGEMENT = frozenset({EventKind.OPENED, EventKind.CLICKED})

LABELS = {
    EventKind.DELIVERED: "Delivered",
    EventKind.BOUNCED_HARD: "Bounced (hard)",
    EventKind.BOUNCED_SOFT: "Bounced (soft)",
    EventKind.COMPLAINED: "Complained",
    EventKind.UNSUBSCRIBED: "Unsubscribed",
    EventKind.OPENED: "Opened",
    EventKind.CLICKED: "Clicked",
    EventKind.OTHER: "Other",
}

RATE_PLACES = 6


class ComplaintLevel(enum.StrEnum):
    """How a rate stands against its warning and limit (complaints 0.1%/0.3%, hard bounces 2%/5%)."""

    OK = "ok"
    WARNING = "warning"  #: at or above the warning
    OVER_LIMIT = "over_limit"  #: at or above the limit


def level(rate: float | None, warning: float, limit: float) -> ComplaintLevel:
    """Where ``rate`` stands; no rate (nothing accepted) is fine."""
    if rate is None or rate < warning:
        return ComplaintLevel.OK
    return ComplaintLevel.WARNING if rate < limit else ComplaintLevel.OVER_LIMIT


@dataclass(frozen=True)
class Metric:
    """One row of the report: distinct recipients, all events, and their rate over ``of``."""

    recipients: int
    events: int
    rate: float | None
    of: str

    def as_dict(self) -> dict[str, Any]:
        rate = None if self.rate is None else round(self.rate, RATE_PLACES)
        return {"recipients": self.recipients, "events": self.events, "rate": rate, "of": self.of}


@dataclass(frozen=True)
class SendReport:
    figures: SendFigures

    @property
    def accepted(self) -> int:
        return self.figures.deliveries.by_state.get("accepted", 0)

    @property
    def deliveries_reported(self) -> bool:
        return EventKind.DELIVERED in self.figures.events

    def metric(self, kind: EventKind) -> Metric | None:
        """The row for ``kind``; None when the provider does not report that kind for this send."""
        tally = self.figures.events.get(kind)
        if tally is None and kind in MAYBE_UNREPORTED:
            return None
        recipients, events = (tally.recipients, tally.events) if tally else (0, 0)
        if kind in ENGAGEMENT and self.deliveries_reported:
            of, base = "delivered", self.figures.events[EventKind.DELIVERED].recipients
        else:
            of, base = "accepted", self.accepted
        return Metric(recipients, events, recipients / base if base else None, of)

    @property
    def complaint_level(self) -> ComplaintLevel:
        complained = self.metric(EventKind.COMPLAINED)
        return level(complained.rate if complained else None, COMPLAINT_WARNING, COMPLAINT_LIMIT)

    @property
    def hard_bounce_level(self) -> ComplaintLevel:
        bounced = self.metric(EventKind.BOUNCED_HARD)
        return level(bounced.rate if bounced else None, HARD_BOUNCE_WARNING, HARD_BOUNCE_LIMIT)

    def as_dict(self) -> dict[str, Any]:
        """The documented ``--json`` structure (see the module docstring); JSON-ready values."""
        send, hourly, leaving = self.figures.send, self.figures.hourly, self.figures.leaving
        metrics = {str(kind): self.metric(kind) for kind in METRICS}
        return {
            "send": {
                "id": send.id,
                "issue_file": send.issue_file,
                "issue_date": send.issue_date.isoformat(),
                "segment": send.segment,
                "subject": send.subject,
                "provider": send.provider,
                "state": str(send.state),
                "started_at": _iso(send.started_at),
                "finished_at": _iso(send.finished_at),
            },
            "recipients": {
                "total": self.figures.deliveries.total,
                "accepted": self.accepted,
                "by_state": dict(self.figures.deliveries.by_state),
            },
            "metrics": {kind: m.as_dict() if m else None for kind, m in metrics.items()},
            "complaints": {
                "level": str(self.complaint_level),
                "warning": COMPLAINT_WARNING,
                "limit": COMPLAINT_LIMIT,
            },
            "hard_bounces": {
                "level": str(self.hard_bounce_level),
                "warning": HARD_BOUNCE_WARNING,
                "limit": HARD_BOUNCE_LIMIT,
            },
            "leaving": {"reasons": dict(leaving.counts), "notes": list(leaving.notes)},
            "hourly": {
                "start": _iso(hourly.start),
                "hours": hourly.hours,
                "counts": {str(kind): list(counts) for kind, counts in sorted(hourly.counts.items())},
                "later": {str(kind): n for kind, n in sorted(hourly.later.items())},
            },
        }


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()
