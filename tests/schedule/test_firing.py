"""What a due job does, on SQLite and PostgreSQL, with the clock passed in.

A scheduled send starts once at its time and its recipients get it once; late within the grace time
it still goes, past it it becomes ``missed`` and the editors are told; an issue edited after
scheduling goes out as edited (and the log says so), one that now fails ``check`` does not go out.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from newsletter.config import Settings
from newsletter.delivery import runner
from newsletter.errors import BadInput
from newsletter.schedule import service
from newsletter.schedule.firing import Fired, fire_rule, fire_send
from newsletter.store.archive import Archive
from newsletter.store.ledger import ledger_for
from newsletter.store.models import Delivery, SendState
from tests.schedule.conftest import (
    EDITOR,
    ISSUE_DATE,
    READERS,
    Journal,
    make_it_fail_check,
    outbox_recipients,
    utc,
)

DUE = utc(2026, 11, 27, 14)  # 09:00 in New York, the configured zone
BEFORE = utc(2026, 11, 20, 12)


def _schedule(settings: Settings, issues: Path, at: str = "2026-11-27 09:00") -> int:
    scheduled = service.schedule_issue(settings, issues / f"{ISSUE_DATE}.yaml", at, now=BEFORE)
    assert scheduled.send.state is SendState.SCHEDULED and scheduled.send.recipients == 0
    return scheduled.send.id


def _send(db: Engine, send_id: int):
    with db.connect() as conn:
        return ledger_for(conn).get_send(send_id)


def _published(db: Engine) -> list[tuple[dt.date, str]]:
    """The web archive's issues: (date, preheader) of what each started send published."""
    with db.connect() as conn:
        return [(entry.issue_date, entry.preheader) for entry in Archive(conn).listing()]


def _deliver(settings: Settings) -> None:
    runner.work_once(settings, stop=threading.Event(), log=lambda line: None)


def _fire(settings: Settings, send_id: int, now: dt.datetime, journal: Journal) -> Fired:
    return fire_send(settings, send_id, now=now, log=journal.log, notify=journal.notify)


def test_a_scheduled_send_starts_at_its_time_and_reaches_everyone_once(
    settings: Settings, db: Engine, issues: Path, journal: Journal
) -> None:
    send_id = _schedule(settings, issues)
    assert _send(db, send_id).scheduled_at == DUE
    assert _fire(settings, send_id, DUE - dt.timedelta(seconds=1), journal) is Fired.NOT_DUE
    assert _send(db, send_id).state is SendState.SCHEDULED
    assert _published(db) == []  # a scheduled send publishes nothing before it starts
    assert _fire(settings, send_id, DUE, journal) is Fired.STARTED
    assert _fire(settings, send_id, DUE + dt.timedelta(seconds=5), journal) is Fired.TAKEN  # a replay
    assert [day for day, _ in _published(db)] == [ISSUE_DATE]  # published once, at its start
    send = _send(db, send_id)
    assert send.state is SendState.SENDING and send.recipients == len(READERS)
    _deliver(settings)
    assert sorted(outbox_recipients(settings)) == sorted(READERS)
    assert _send(db, send_id).state is SendState.FINISHED
    assert journal.notes == []


def test_late_within_the_grace_time_it_still_goes(
    settings: Settings, db: Engine, issues: Path, journal: Journal
) -> None:
    send_id = _schedule(settings, issues)
    assert _fire(settings, send_id, DUE + dt.timedelta(minutes=59), journal) is Fired.STARTED
    _deliver(settings)
    assert sorted(outbox_recipients(settings)) == sorted(READERS)


def test_past_the_grace_time_it_is_missed_reported_and_never_sent(
    settings: Settings, db: Engine, issues: Path, journal: Journal
) -> None:
    send_id = _schedule(settings, issues)
    assert _fire(settings, send_id, DUE + dt.timedelta(hours=1, seconds=1), journal) is Fired.MISSED
    send = _send(db, send_id)
    assert send.state is SendState.MISSED and "while no worker ran" in (send.error or "")
    assert _fire(settings, send_id, DUE + dt.timedelta(days=3), journal) is Fired.TAKEN
    _deliver(settings)
    assert outbox_recipients(settings) == []
    assert _published(db) == []  # never sent, never in the archive
    assert len(journal.notes) == 1 and "missed" in journal.notes[0][0]
    (report,) = runner.status(settings)
    assert report.as_dict()["state"] == "missed" and "missed" in report.describe()
    # A missed send may be scheduled again.
    again = service.schedule_issue(settings, issues / f"{ISSUE_DATE}.yaml", "2026-12-01 09:00", now=BEFORE)
    assert again.send.id == send_id and again.send.state is SendState.SCHEDULED and again.send.error is None


def test_an_issue_edited_after_scheduling_goes_out_as_edited(
    settings: Settings, db: Engine, issues: Path, journal: Journal
) -> None:
    send_id = _schedule(settings, issues)
    before = _send(db, send_id).content_hash
    path = issues / f"{ISSUE_DATE}.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("preheader: ", "preheader: Updated. ", 1), encoding="utf-8")
    assert _fire(settings, send_id, DUE, journal) is Fired.STARTED
    assert "changed since it was scheduled" in journal.text()
    assert _send(db, send_id).content_hash != before
    ((_day, preheader),) = _published(db)
    assert preheader.startswith("Updated. ")  # the archive shows what went out: the edited issue
    _deliver(settings)
    assert sorted(outbox_recipients(settings)) == sorted(READERS)


@pytest.mark.parametrize("damage", ["fails check", "deleted", "binary", "a directory", "huge"])
def test_an_issue_that_is_not_fit_at_send_time_is_not_sent(
    settings: Settings, db: Engine, issues: Path, journal: Journal, damage: str
) -> None:
    send_id = _schedule(settings, issues)
    path = issues / f"{ISSUE_DATE}.yaml"
    if damage == "fails check":
        make_it_fail_check(path)
    elif damage == "deleted":
        path.unlink()
    elif damage == "a directory":
        path.unlink()
        path.mkdir()
    elif damage == "huge":
        path.write_text("title: x\n" + "# padding\n" * 2_000_000, encoding="utf-8")
    else:
        path.write_bytes(b"\x00\xff\xfe" * 1000)
    assert _fire(settings, send_id, DUE, journal) is Fired.REFUSED
    send = _send(db, send_id)
    assert send.state is SendState.CANCELLED and "could not be sent" in (send.error or "")
    assert len(journal.notes) == 1
    _deliver(settings)
    assert outbox_recipients(settings) == []


def test_refusing_to_schedule_an_issue_that_fails_check(settings: Settings, db: Engine, issues: Path) -> None:
    path = issues / f"{ISSUE_DATE}.yaml"
    make_it_fail_check(path)
    with pytest.raises(BadInput, match="fails check"):
        service.schedule_issue(settings, path, "2026-11-27 09:00", now=BEFORE)
    assert runner.status(settings) == []


def test_cancel_and_move(settings: Settings, db: Engine, issues: Path, journal: Journal) -> None:
    send_id = _schedule(settings, issues)
    moved = service.move(settings, issues / f"{ISSUE_DATE}.yaml", "2026-11-27 10:30", now=BEFORE)
    assert moved.send.scheduled_at == utc(2026, 11, 27, 15, 30)
    assert _fire(settings, send_id, DUE, journal) is Fired.NOT_DUE  # the old time's job, if it ran
    with pytest.raises(BadInput, match="already scheduled"):
        _schedule(settings, issues)
    service.cancel(settings, Path("2026-11-27"))
    assert _send(db, send_id).state is SendState.CANCELLED
    assert _fire(settings, send_id, utc(2026, 11, 27, 15, 30), journal) is Fired.TAKEN
    with pytest.raises(BadInput, match="not scheduled"):
        service.cancel(settings, Path("2026-11-27"))
    with pytest.raises(BadInput, match="not scheduled"):
        service.move(settings, Path("2026-11-27"), "2026-11-28 09:00", now=BEFORE)
    with pytest.raises(BadInput, match="no send"):
        service.cancel(settings, Path("2026-11-13"))
    _deliver(settings)
    assert outbox_recipients(settings) == [] and journal.notes == []


def test_a_cancelled_send_sent_by_hand_publishes_the_issue_as_it_is_then(
    settings: Settings, db: Engine, issues: Path
) -> None:
    _schedule(settings, issues)
    service.cancel(settings, Path("2026-11-27"))
    assert _published(db) == []
    path = issues / f"{ISSUE_DATE}.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("preheader: ", "preheader: Later. ", 1), "utf-8")
    plan = runner.plan(runner.prepare_issue(path, settings), settings, "")
    assert plan.revive is not None  # `send` starts the cancelled row
    runner.execute(plan, settings)
    ((day, preheader),) = _published(db)
    assert day == ISSUE_DATE and preheader.startswith("Later. ")


def test_a_sent_issue_cannot_be_scheduled_again(settings: Settings, db: Engine, issues: Path) -> None:
    path = issues / f"{ISSUE_DATE}.yaml"
    prepared = runner.prepare_issue(path, settings)
    runner.execute(runner.plan(prepared, settings, ""), settings)
    with pytest.raises(BadInput, match="finished: it cannot be scheduled again"):
        service.schedule_issue(settings, path, "2026-11-27 09:00", now=BEFORE)


# -- the weekly rule -------------------------------------------------------------------------------


def _rule(settings: Settings) -> int:
    return service.set_weekly(settings, "fri", "09:00", now=BEFORE).id


def _fire_rule(settings: Settings, rule_id: int, now: dt.datetime, journal: Journal) -> Fired:
    return fire_rule(settings, rule_id, now=now, log=journal.log, notify=journal.notify)


def test_weekly_rule_sends_that_days_issue_once(settings: Settings, db: Engine, journal: Journal) -> None:
    rule_id = _rule(settings)
    assert _fire_rule(settings, rule_id, DUE + dt.timedelta(seconds=2), journal) is Fired.STARTED
    assert _fire_rule(settings, rule_id, DUE + dt.timedelta(seconds=3), journal) is Fired.TAKEN
    assert [day for day, _ in _published(db)] == [ISSUE_DATE]
    _deliver(settings)
    assert sorted(outbox_recipients(settings)) == sorted(READERS)
    (report,) = runner.status(settings)
    assert report.send.issue_date == ISSUE_DATE and report.send.scheduled_at == DUE
    assert journal.notes == []


def test_weekly_rule_with_the_issue_missing_sends_nothing_and_tells_the_editors(
    settings: Settings, db: Engine, journal: Journal
) -> None:
    rule_id = _rule(settings)
    week_later = DUE + dt.timedelta(days=7)  # 2026-12-04: no such file
    assert _fire_rule(settings, rule_id, week_later, journal) is Fired.REFUSED
    assert _fire_rule(settings, rule_id, week_later + dt.timedelta(seconds=1), journal) is Fired.TAKEN
    assert "no issue file" in journal.text() and "2026-12-04.yaml" in journal.text()
    assert len(journal.notes) == 1 and "2026-12-04" in journal.notes[0][0]
    assert runner.status(settings) == []


def test_weekly_rule_with_a_failing_issue_sends_nothing_and_tells_the_editors(
    settings: Settings, db: Engine, issues: Path, journal: Journal
) -> None:
    path = issues / f"{ISSUE_DATE}.yaml"
    make_it_fail_check(path)
    rule_id = _rule(settings)
    assert _fire_rule(settings, rule_id, DUE, journal) is Fired.REFUSED
    assert "fails check" in journal.notes[0][1]
    assert runner.status(settings) == []


def test_weekly_rule_past_the_grace_time_sends_nothing(
    settings: Settings, db: Engine, journal: Journal
) -> None:
    rule_id = _rule(settings)
    assert _fire_rule(settings, rule_id, DUE + dt.timedelta(hours=2), journal) is Fired.MISSED
    assert runner.status(settings) == [] and len(journal.notes) == 1


def test_weekly_rule_leaves_an_issue_the_editor_scheduled(
    settings: Settings, db: Engine, issues: Path, journal: Journal
) -> None:
    send_id = _schedule(settings, issues, "2026-11-27 11:00")
    rule_id = _rule(settings)
    assert _fire_rule(settings, rule_id, DUE, journal) is Fired.TAKEN
    assert _send(db, send_id).state is SendState.SCHEDULED
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Delivery)).scalar_one() == 0


def test_the_editor_note_goes_through_the_configured_provider(
    settings: Settings, db: Engine, issues: Path
) -> None:
    from newsletter.schedule.worker import editor_notifier

    lines: list[str] = []
    send_id = _schedule(settings, issues)
    fire_send(
        settings,
        send_id,
        now=DUE + dt.timedelta(days=2),
        log=lines.append,
        notify=editor_notifier(settings, lines.append),
    )
    assert outbox_recipients(settings) == [EDITOR]
    assert any(f"told {EDITOR}" in line and "accepted" in line for line in lines)
