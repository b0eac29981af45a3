"""Two workers on one database firing the same send or rule: it starts once, whoever wins.

The guard is the row (``UPDATE sends … WHERE state = 'scheduled'``, a rule's ``last_occurrence``),
not the scheduler: both workers' schedulers see the due job and both run it.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import time_machine
from sqlalchemy import Engine, func, select

from newsletter.config import Settings
from newsletter.delivery import runner
from newsletter.schedule import service
from newsletter.schedule.firing import Fired, fire_rule, fire_send
from newsletter.store.models import Delivery
from tests.schedule.conftest import ISSUE_DATE, READERS, Journal, outbox_recipients, utc
from tests.schedule.test_scheduler_clock import DUE, scheduler_on

RACERS = 4


def _race(fire: Callable[[], Any]) -> list[Any]:
    """Run ``fire`` in RACERS threads released at the same moment; their results."""
    barrier = threading.Barrier(RACERS)
    results: list[Any] = []
    errors: list[BaseException] = []

    def racer() -> None:
        barrier.wait()
        try:
            results.append(fire())
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=racer) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return results


def _deliveries(db: Engine) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Delivery)).scalar_one())


def test_workers_racing_for_one_send_start_it_once(
    settings: Settings, db: Engine, issues: Path, journal: Journal
) -> None:
    path = issues / f"{ISSUE_DATE}.yaml"
    send_id = service.schedule_issue(settings, path, "2026-11-27 09:00", now=utc(2026, 11, 20)).send.id
    results = _race(lambda: fire_send(settings, send_id, now=DUE, log=journal.log, notify=journal.notify))
    assert Counter(results) == {Fired.STARTED: 1, Fired.TAKEN: RACERS - 1}
    assert _deliveries(db) == len(READERS)
    _race(lambda: runner.work_once(settings, stop=threading.Event(), log=journal.log))
    assert sorted(outbox_recipients(settings)) == sorted(READERS)


def test_workers_racing_for_one_weekly_occurrence_act_once(
    settings: Settings, db: Engine, journal: Journal
) -> None:
    rule_id = service.set_weekly(settings, "fri", "09:00", now=utc(2026, 11, 20)).id
    results = _race(lambda: fire_rule(settings, rule_id, now=DUE, log=journal.log, notify=journal.notify))
    assert Counter(results) == {Fired.STARTED: 1, Fired.TAKEN: RACERS - 1}
    assert _deliveries(db) == len(READERS)


def test_workers_racing_to_report_a_missing_issue_tell_the_editors_once(
    settings: Settings, db: Engine, journal: Journal
) -> None:
    rule_id = service.set_weekly(settings, "thu", "09:00", now=utc(2026, 11, 20))
    thursday = utc(2026, 11, 26, 14)  # no 2026-11-26.yaml
    results = _race(
        lambda: fire_rule(settings, rule_id.id, now=thursday, log=journal.log, notify=journal.notify)
    )
    assert Counter(results) == {Fired.REFUSED: 1, Fired.TAKEN: RACERS - 1}
    assert len(journal.notes) == 1


def test_two_schedulers_on_one_job_store(
    settings: Settings, db: Engine, issues: Path, journal: Journal
) -> None:
    """Both schedulers take the due job; one starts the send, and neither dies finding it gone."""
    path = issues / f"{ISSUE_DATE}.yaml"
    send_id = service.schedule_issue(settings, path, "2026-11-27 09:00", now=utc(2026, 11, 20)).send.id
    with time_machine.travel(DUE, tick=False), scheduler_on(db) as first, scheduler_on(db) as second:
        barrier = threading.Barrier(2)

        def tick(scheduler: Any) -> None:
            barrier.wait()
            scheduler.tick()

        threads = [threading.Thread(target=tick, args=(s,)) for s in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert first.get_jobs() == [] and second.get_jobs() == []
    assert _deliveries(db) == len(READERS)
    lines = journal.text()
    assert lines.count(f"send {send_id} ({path}): started") == 1
