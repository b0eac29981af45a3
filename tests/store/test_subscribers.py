"""SubscriberRepository: add, unsubscribe, forget, counts, lists and export, on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.store.models import Subscriber, SubscriberStatus, SubscriberTag, Suppression
from newsletter.store.privacy import address_hash
from newsletter.store.subscribers import (
    AlreadySubscribed,
    NotFound,
    SubscriberRepository,
    Suppressed,
    audience,
)


def test_add_records_consent_and_normalises(repo: SubscriberRepository, session: Session) -> None:
    added = repo.add(" Ann@Example.COM ", name="Ann", tags=["Press", "staff"])
    session.commit()
    found = repo.get_by_email("ann@example.com")
    assert found is not None and found.id == added.id
    assert found.email == "Ann@Example.COM"
    assert found.email_normalized == "ann@example.com"
    assert found.status is SubscriberStatus.ACTIVE
    assert [t.name for t in found.tags] == ["press", "staff"]
    assert found.consent_at is not None and found.consent_at.tzinfo is not None
    assert found.consent_method == "cli"
    assert found.confirmed_at is not None


def test_address_is_unique_case_insensitively(repo: SubscriberRepository) -> None:
    repo.add("ann@example.com")
    with pytest.raises(AlreadySubscribed):
        repo.add("ANN@EXAMPLE.COM")


def test_unsubscribe_suppresses_and_blocks_add(repo: SubscriberRepository, session: Session) -> None:
    repo.add("ann@example.com")
    gone = repo.unsubscribe("Ann@example.com")
    session.commit()
    assert gone.status is SubscriberStatus.UNSUBSCRIBED and gone.unsubscribed_at is not None
    assert repo.get_suppression("ann@example.com") is not None
    with pytest.raises(Suppressed):
        repo.add("ann@example.com")
    assert repo.unsubscribe("ann@example.com").status is SubscriberStatus.UNSUBSCRIBED  # idempotent
    with pytest.raises(NotFound):
        repo.unsubscribe("nobody@example.com")


def test_resubscribe_on_request_lifts_the_suppression(repo: SubscriberRepository, session: Session) -> None:
    repo.add("ann@example.com", tags=["press"])
    repo.unsubscribe("ann@example.com")
    back = repo.add("ann@example.com", resubscribe=True, consent_ip="192.0.2.1")
    session.commit()
    assert back.status is SubscriberStatus.ACTIVE and back.unsubscribed_at is None
    assert back.consent_ip == "192.0.2.1"
    assert repo.get_suppression("ann@example.com") is None
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 1


def test_add_stores_the_suppression_hash_of_the_normalised_address(
    repo: SubscriberRepository, session: Session
) -> None:
    """What sends match ``suppressions`` against, so it must be ``address_hash(email_normalized)``:
    for a new row, a non-ASCII address and a row reused by a resubscribe."""
    repo.add(" Ann@Example.COM ")
    repo.add("Zoë@Exämple.org", status=SubscriberStatus.PENDING)
    repo.add("bob@example.com")
    repo.unsubscribe("bob@example.com")
    repo.add("Bob@example.com", resubscribe=True)
    session.commit()
    stored = dict(session.execute(select(Subscriber.email_normalized, Subscriber.address_hash)).all())
    assert len(stored) == 3 and "zoë@exämple.org" in stored
    assert stored == {normalized: address_hash(normalized) for normalized in stored}


def test_forget_erases_everything_but_the_hash(repo: SubscriberRepository, session: Session) -> None:
    repo.add("ann@example.com", name="Ann", tags=["press"])
    session.commit()
    result = repo.forget("ANN@example.com")
    session.commit()
    assert result.erased and result.reason == "forgotten"
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 0
    assert session.scalar(select(func.count()).select_from(SubscriberTag)) == 0
    (row,) = session.scalars(select(Suppression)).all()
    assert row.address_hash == address_hash("ann@example.com")
    with pytest.raises(Suppressed):
        repo.add("ann@example.com")
    # Forgetting an unknown address still suppresses it; an unsubscribed one keeps its reason.
    assert not repo.forget("new@example.com").erased
    repo.add("bob@example.com")
    repo.unsubscribe("bob@example.com")
    assert repo.forget("bob@example.com").reason == "unsubscribed"


def _populate(repo: SubscriberRepository, session: Session) -> None:
    repo.add("a@example.com", tags=["press"])
    repo.add("b@example.com", tags=["press", "staff"])
    repo.add("c@example.com", tags=["staff"])
    repo.add("d@example.com")
    repo.add("e@example.com", tags=["press"], status=SubscriberStatus.PENDING)
    repo.add("f@example.com", tags=["press"])
    repo.unsubscribe("f@example.com")
    session.commit()


def _emails(session: Session, query) -> set[str]:
    ids = set(session.scalars(query))
    rows = session.scalars(select(Subscriber.email).where(Subscriber.id.in_(ids)))
    return set(rows)


@pytest.mark.parametrize(
    ("segment", "expected"),
    [
        (None, {"a", "b", "c", "d"}),
        ("tag:press", {"a", "b"}),
        ("tag:press and not tag:staff", {"a"}),
        ("tag:staff or tag:press", {"a", "b", "c"}),
        ("not (tag:staff or tag:press)", {"d"}),
        ("TAG:Press AND NOT tag:staff", {"a"}),
        ("tag:nosuchtag", set()),
        ("all", {"a", "b", "c", "d"}),
    ],
)
def test_send_audience_is_active_subscribers_matching_the_segment(
    repo: SubscriberRepository, session: Session, segment: str | None, expected: set[str]
) -> None:
    _populate(repo, session)
    assert _emails(session, audience(segment)) == {f"{x}@example.com" for x in expected}


def test_counts_lists_and_filters(repo: SubscriberRepository, session: Session) -> None:
    _populate(repo, session)
    counts = repo.counts_by_status()
    assert counts[SubscriberStatus.ACTIVE] == 4
    assert counts[SubscriberStatus.PENDING] == 1
    assert counts[SubscriberStatus.UNSUBSCRIBED] == 1
    assert repo.count() == 6
    assert repo.count(tags=["press"]) == 4
    assert repo.count(status=SubscriberStatus.ACTIVE, tags=["press"]) == 2
    assert repo.count(tags=["press", "staff"]) == 1
    assert repo.count(segment="tag:press and status:pending") == 1
    listed = repo.find(tags=["press"], limit=2)
    assert [s.email for s in listed] == ["a@example.com", "b@example.com"]
    assert repo.count_suppressions() == 1


def test_export_rows_stream_tags_and_attributes(repo: SubscriberRepository, session: Session) -> None:
    ann = repo.add("Ann@example.com", name="Ann", tags=["staff", "press"])
    ann.attributes = {"city": "Paris", "zip": "75001"}
    repo.add("bob@example.com")
    session.commit()
    header, rows = repo.export_rows()
    assert header == ["email", "name", "status", "tags", "city", "zip"]
    assert list(rows) == [
        ["Ann@example.com", "Ann", "active", "press;staff", "Paris", "75001"],
        ["bob@example.com", "", "active", "", "", ""],
    ]
    header, rows = repo.export_rows(status=SubscriberStatus.PENDING)
    assert list(rows) == []


def test_export_escapes_cells_a_spreadsheet_would_run_as_formulas(
    repo: SubscriberRepository, session: Session
) -> None:
    """OWASP CSV injection: a leading ``'`` makes the cell text; import takes it off again."""
    formulas = ['=HYPERLINK("http://x","y")', "+1 555", "-5", "@SUM(A1)", "\tTab", "\rReturn"]
    for i, value in enumerate(formulas):
        subscriber = repo.add(f"user{i}@example.com", name=value)
        subscriber.attributes = {"note": value}
    repo.add("-dash@example.com", name="'=quoted")  # really begins with a quote: one more is added
    plus = repo.add("+plus@example.com", name="O'Brien")  # a quote elsewhere is left alone
    plus.attributes = {"=key": 5, "@n": -1}
    session.commit()
    header, rows = repo.export_rows()
    assert header == ["email", "name", "status", "tags", "'=key", "'@n", "note"]
    exported = list(rows)
    for row, value in zip(exported, formulas, strict=False):
        assert row[1] == row[6] == "'" + value
    assert exported[-2][:2] == ["'-dash@example.com", "''=quoted"]
    assert exported[-1][:2] == ["'+plus@example.com", "O'Brien"]
    assert exported[-1][4:6] == ["5", "'-1"]
