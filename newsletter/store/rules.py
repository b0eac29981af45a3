"""Standing weekly send rules: add, replace, remove, list, and claim one occurrence.

A rule says "every friday at 09:00 America/New_York, send that day's issue to this segment"; at most
one per segment, so setting a rule again replaces it. :meth:`Rules.claim_occurrence` is the guard
that makes an occurrence happen once however many workers fire it: it moves ``last_occurrence``
forward with a conditional ``UPDATE``, and only the worker whose update changed the row acts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, insert, or_, select, update

from newsletter.store.models import ScheduleRule, utcnow

__all__ = ["RuleInfo", "Rules"]


@dataclass(frozen=True)
class RuleInfo:
    """A ``schedule_rules`` row as plain data."""

    id: int
    weekday: str
    send_time: dt.time
    timezone: str
    segment: str
    last_occurrence: dt.datetime | None
    created_at: dt.datetime

    def describe(self) -> str:
        audience = f"segment {self.segment!r}" if self.segment else "everyone"
        return (
            f"every {self.weekday} at {self.send_time:%H:%M} {self.timezone}: "
            f"that day's issue file, to {audience}"
        )


class Rules:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def all(self) -> list[RuleInfo]:
        rows = self.conn.execute(select(*ScheduleRule.__table__.c).order_by(ScheduleRule.id))
        return [_rule(row) for row in rows]

    def get(self, rule_id: int) -> RuleInfo | None:
        row = self.conn.execute(select(*ScheduleRule.__table__.c).where(ScheduleRule.id == rule_id)).first()
        return _rule(row) if row else None

    def set_weekly(self, *, weekday: str, send_time: dt.time, timezone: str, segment: str) -> RuleInfo:
        """Create the segment's rule, or change its day and time (its id, and so its job, stay)."""
        values: dict[str, Any] = {"weekday": weekday, "send_time": send_time, "timezone": timezone}
        existing = self.conn.execute(
            select(ScheduleRule.id).where(ScheduleRule.segment == segment)
        ).scalar_one_or_none()
        if existing is None:
            rule_id = self.conn.execute(
                insert(ScheduleRule)
                .values(segment=segment, created_at=utcnow(), **values)
                .returning(ScheduleRule.id)
            ).scalar_one()
        else:
            rule_id = existing
            self.conn.execute(update(ScheduleRule).where(ScheduleRule.id == rule_id).values(**values))
        found = self.get(rule_id)
        assert found is not None
        return found

    def remove(self, segment: str) -> RuleInfo | None:
        """Delete the segment's rule; the removed rule, or None if there was none."""
        row = self.conn.execute(
            select(*ScheduleRule.__table__.c).where(ScheduleRule.segment == segment)
        ).first()
        if row is None:
            return None
        self.conn.execute(delete(ScheduleRule).where(ScheduleRule.id == row.id))
        return _rule(row)

    def claim_occurrence(self, rule_id: int, occurrence: dt.datetime) -> bool:
        """True for exactly one caller per rule and occurrence (UTC), and never for an older one."""
        moved = self.conn.execute(
            update(ScheduleRule)
            .where(
                ScheduleRule.id == rule_id,
                or_(ScheduleRule.last_occurrence.is_(None), ScheduleRule.last_occurrence < occurrence),
            )
            .values(last_occurrence=occurrence)
        ).rowcount
        return moved == 1


def _rule(row: Any) -> RuleInfo:
    return RuleInfo(**row._mapping)
