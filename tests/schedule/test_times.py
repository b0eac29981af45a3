"""Local times, zones and the weekly trigger: DST weeks in America/New_York and Europe/Berlin."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest

from newsletter.errors import BadInput
from newsletter.schedule.times import (
    last_occurrence,
    local_instant,
    parse_clock,
    parse_weekday,
    parse_zone,
    show,
    weekly_trigger,
)

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def test_a_local_time_is_stored_as_its_utc_instant() -> None:
    assert local_instant("2026-11-27 09:00", NEW_YORK) == utc(2026, 11, 27, 14)
    assert local_instant("2026-07-03 09:00", NEW_YORK) == utc(2026, 7, 3, 13)
    assert local_instant(" 2026-11-27T09:00 ", BERLIN) == utc(2026, 11, 27, 8)
    assert show(utc(2026, 11, 27, 14), NEW_YORK) == "2026-11-27 09:00 EST (2026-11-27 14:00 UTC)"


@pytest.mark.parametrize(
    ("text", "zone", "problem"),
    [
        ("2026-03-08 02:30", NEW_YORK, "does not exist"),  # clocks jump 02:00 -> 03:00
        ("2026-03-29 02:30", BERLIN, "does not exist"),
        ("2026-11-01 01:30", NEW_YORK, "happens twice"),  # 01:00-02:00 repeats
        ("2026-10-25 02:30", BERLIN, "happens twice"),
        ("2026-11-27 09:00+01:00", NEW_YORK, "without an offset"),
        ("next friday", NEW_YORK, "YYYY-MM-DD HH:MM"),
        ("2026-13-01 09:00", NEW_YORK, "YYYY-MM-DD HH:MM"),
        ("", NEW_YORK, "YYYY-MM-DD HH:MM"),
        ("9" * 10_000, NEW_YORK, "YYYY-MM-DD HH:MM"),
        ("2026-11-27 09:00\x00", NEW_YORK, "YYYY-MM-DD HH:MM"),
    ],
)
def test_times_that_do_not_name_one_instant_are_refused(text: str, zone: ZoneInfo, problem: str) -> None:
    with pytest.raises(BadInput, match=problem):
        local_instant(text, zone)


def test_weekday_time_and_zone_parsing() -> None:
    assert parse_weekday("fri") == parse_weekday("Friday") == parse_weekday("FRI") == "friday"
    assert parse_clock("09:00") == dt.time(9)
    assert parse_zone("Europe/Berlin") == BERLIN
    for bad in ("f", "fr1", "", "funday", "t"):  # "t" would be tuesday or thursday
        with pytest.raises(BadInput, match="weekday"):
            parse_weekday(bad)
    for bad in ("9am", "25:00", "09:00:30", "09:00+02:00", ""):
        with pytest.raises(BadInput, match="HH:MM"):
            parse_clock(bad)
    for bad in ("Mars/Olympus", "../../etc/passwd", "", "EST5EDT\x00"):
        with pytest.raises(BadInput, match="time zone"):
            parse_zone(bad)


def _fires(zone: ZoneInfo, weekday: str, start: dt.datetime, count: int) -> list[dt.datetime]:
    trigger = weekly_trigger(weekday, dt.time(9), zone)
    fire = trigger.get_next_fire_time(None, start)
    out = []
    while len(out) < count:
        assert fire is not None
        out.append(fire)
        fire = trigger.get_next_fire_time(fire, fire + dt.timedelta(seconds=1))
    return out


@pytest.mark.parametrize(
    ("zone", "weekday", "start", "utc_hours"),
    [
        # US 2026: DST starts Sunday 2026-03-08, ends Sunday 2026-11-01.
        (NEW_YORK, "friday", utc(2026, 2, 28), [14, 13, 13]),  # Mar 6 EST, Mar 13 EDT, Mar 20
        (NEW_YORK, "friday", utc(2026, 10, 24), [13, 14, 14]),  # Oct 30 EDT, Nov 6 EST, Nov 13
        (NEW_YORK, "sunday", utc(2026, 3, 1), [14, 13]),  # the changeover Sunday itself
        (NEW_YORK, "sunday", utc(2026, 10, 25), [13, 14]),
        # EU 2026: summer time starts Sunday 2026-03-29, ends Sunday 2026-10-25.
        (BERLIN, "friday", utc(2026, 3, 21), [8, 7]),  # Mar 27 CET, Apr 3 CEST
        (BERLIN, "friday", utc(2026, 10, 17), [7, 8]),  # Oct 23 CEST, Oct 30 CET
        (BERLIN, "sunday", utc(2026, 3, 22), [8, 7]),
        (BERLIN, "sunday", utc(2026, 10, 18), [7, 8]),
    ],
)
def test_nine_o_clock_stays_nine_o_clock_across_dst(
    zone: ZoneInfo, weekday: str, start: dt.datetime, utc_hours: list[int]
) -> None:
    fires = _fires(zone, weekday, start, len(utc_hours))
    assert [f.astimezone(zone).hour for f in fires] == [9] * len(fires)
    assert [f.astimezone(zone).strftime("%A").lower() for f in fires] == [weekday] * len(fires)
    assert [f.astimezone(dt.UTC).hour for f in fires] == utc_hours
    gaps = {(b - a) for a, b in itertools.pairwise(fires)}
    assert gaps <= {dt.timedelta(days=7), dt.timedelta(days=7, hours=1), dt.timedelta(days=6, hours=23)}


def test_last_occurrence_is_the_latest_at_or_before_now() -> None:
    nine = dt.time(9)
    assert last_occurrence("friday", nine, NEW_YORK, utc(2026, 11, 27, 14)) == utc(2026, 11, 27, 14)
    assert last_occurrence("friday", nine, NEW_YORK, utc(2026, 11, 27, 13, 59)) == utc(2026, 11, 20, 14)
    # The Friday after the US change: 09:00 EDT is 13:00 UTC.
    assert last_occurrence("friday", nine, NEW_YORK, utc(2026, 3, 13, 13, 30)) == utc(2026, 3, 13, 13)
    assert last_occurrence("friday", nine, BERLIN, utc(2026, 10, 30, 8)) == utc(2026, 10, 30, 8)
