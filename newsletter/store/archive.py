"""What the web archive publishes: the issue each send rendered, stored when the send starts.

A send's ``published_issues`` row is written in the transaction that starts it (``Ledger``'s
``create_send`` and ``start_scheduled``), so every running, paused or finished send has one and a
scheduled, cancelled or missed one has none. The archive lists, for each issue date, the row of the
send started last: an issue re-sent to another audience after an edit shows as it went out last.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Connection, func, insert, select, text
from sqlalchemy.orm import aliased

from newsletter.store.models import PublishedIssue

__all__ = ["Archive", "IssueSnapshot", "PublishedEntry"]


@dataclass(frozen=True)
class IssueSnapshot:
    """The issue a send renders from: ``document`` is its validated model as JSON."""

    issue_date: dt.date
    subject: str
    preheader: str
    document: str


@dataclass(frozen=True)
class PublishedEntry:
    """One issue of the archive's listing, without its document (the index needs only these)."""

    id: int
    send_id: int
    issue_date: dt.date
    subject: str
    preheader: str
    published_at: dt.datetime


_ENTRY = (
    PublishedIssue.id,
    PublishedIssue.send_id,
    PublishedIssue.issue_date,
    PublishedIssue.subject,
    PublishedIssue.preheader,
    PublishedIssue.published_at,
)


class Archive:
    """The archive's queries on the caller's connection (the caller owns the transaction)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def publish(
        self, send_id: int, content_hash: str, snapshot: IssueSnapshot, published_at: dt.datetime
    ) -> None:
        self.conn.execute(
            insert(PublishedIssue).values(
                send_id=send_id,
                issue_date=snapshot.issue_date,
                subject=snapshot.subject,
                preheader=snapshot.preheader,
                content_hash=content_hash,
                document=snapshot.document,
                published_at=published_at,
            )
        )

    def version(self) -> int:
        """Changes whenever the listing may have: rows are only ever added."""
        return int(self.conn.execute(select(func.coalesce(func.max(PublishedIssue.id), 0))).scalar_one())

    def listing(self) -> list[PublishedEntry]:
        """The newest row of each issue date, newest date first."""
        newer = aliased(PublishedIssue)
        latest = (
            select(func.max(newer.id)).where(newer.issue_date == PublishedIssue.issue_date).scalar_subquery()
        )
        query = select(*_ENTRY).where(PublishedIssue.id == latest).order_by(PublishedIssue.issue_date.desc())
        return [PublishedEntry(*row) for row in self.conn.execute(query)]

    def document(self, entry_id: int) -> str | None:
        query = select(PublishedIssue.document).where(PublishedIssue.id == entry_id)
        return self.conn.execute(query).scalar_one_or_none()

    def ping(self) -> None:
        """A round trip to the database that also proves the archive's table is there."""
        self.conn.execute(select(PublishedIssue.id).limit(1)).all()
        self.conn.execute(text("SELECT 1")).scalar_one()
