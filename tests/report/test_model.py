"""Rates, denominators and the complaint verdict, on hand-made figures (no database needed)."""

from __future__ import annotations

import datetime as dt

import pytest

from newsletter.report.model import ComplaintLevel, SendReport
from newsletter.store.ledger import SendCounts, SendInfo
from newsletter.store.models import EventKind, SendState
from newsletter.store.reports import EventTally, HourlySeries, LeavingReasons, SendFigures

START = dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC)


def report(accepted: int, **tallies: tuple[int, int]) -> SendReport:
    """A send with ``accepted`` accepted recipients and ``kind=(events, recipients)`` tallies."""
    send = SendInfo(
        1, "issues/x.yaml", START.date(), "", "Subject", "h" * 64, "postmark",
        SendState.FINISHED, None, accepted, None, START, START, START, 0,
    )  # fmt: skip
    events = {EventKind(kind): EventTally(*counts) for kind, counts in tallies.items()}
    return SendReport(
        SendFigures(
            send, SendCounts(1, {"accepted": accepted}, {}), events, HourlySeries(START, 72, {}, {}),
            LeavingReasons({}, ()),
        )
    )


@pytest.mark.parametrize(
    ("complaints", "accepted", "level"),
    [
        (0, 1000, ComplaintLevel.OK),
        (9, 10_000, ComplaintLevel.OK),  # 0.09%
        (1, 1000, ComplaintLevel.WARNING),  # exactly 0.1%
        (29, 10_000, ComplaintLevel.WARNING),  # 0.29%
        (3, 1000, ComplaintLevel.OVER_LIMIT),  # exactly 0.3%: the limit is "never reach"
        (1, 1, ComplaintLevel.OVER_LIMIT),
        (0, 0, ComplaintLevel.OK),  # nothing accepted: no rate, nothing to judge
    ],
)
def test_complaint_rate_levels(complaints: int, accepted: int, level: ComplaintLevel) -> None:
    assert report(accepted, complained=(complaints, complaints)).complaint_level is level


@pytest.mark.parametrize(
    ("bounced", "accepted", "level"),
    [
        (19, 1000, ComplaintLevel.OK),  # 1.9%
        (20, 1000, ComplaintLevel.WARNING),  # exactly 2%
        (49, 1000, ComplaintLevel.WARNING),
        (50, 1000, ComplaintLevel.OVER_LIMIT),  # exactly 5%
        (0, 0, ComplaintLevel.OK),
    ],
)
def test_hard_bounce_rate_levels(bounced: int, accepted: int, level: ComplaintLevel) -> None:
    judged = report(accepted, bounced_hard=(bounced, bounced))
    assert judged.hard_bounce_level is level
    assert judged.as_dict()["hard_bounces"] == {"level": str(level), "warning": 0.02, "limit": 0.05}


def test_engagement_is_over_accepted_when_deliveries_are_not_reported() -> None:
    without = report(200, opened=(150, 50), clicked=(12, 10))
    opened = without.metric(EventKind.OPENED)
    assert opened is not None and (opened.rate, opened.of, opened.events) == (0.25, "accepted", 150)
    with_deliveries = report(200, delivered=(100, 100), opened=(150, 50))
    opened = with_deliveries.metric(EventKind.OPENED)
    assert opened is not None and (opened.rate, opened.of) == (0.5, "delivered")
    delivered = with_deliveries.metric(EventKind.DELIVERED)
    assert delivered is not None and (delivered.rate, delivered.of) == (0.5, "accepted")


def test_unreported_kinds_are_none_and_the_others_zero() -> None:
    quiet = report(10)
    assert [quiet.metric(k) for k in (EventKind.DELIVERED, EventKind.OPENED, EventKind.CLICKED)] == [None] * 3
    bounced = quiet.metric(EventKind.BOUNCED_HARD)
    assert bounced is not None and (bounced.recipients, bounced.rate) == (0, 0.0)


def test_zero_accepted_gives_null_rates_not_a_division_by_zero() -> None:
    empty = report(0, opened=(3, 1), bounced_soft=(1, 1))
    data = empty.as_dict()
    assert data["metrics"]["opened"] == {"recipients": 1, "events": 3, "rate": None, "of": "accepted"}
    assert data["metrics"]["bounced_soft"]["rate"] is None
    assert data["complaints"]["level"] == "ok"


def test_rates_are_rounded_to_six_places() -> None:
    data = report(3, bounced_hard=(1, 1)).as_dict()
    assert data["metrics"]["bounced_hard"]["rate"] == 0.333333
