"""Wall-clock times in the newsletter's zone, and the weekly trigger.

An editor says "2026-11-27 09:00" meaning 09:00 where the newsletter lives; it is stored as the UTC
instant it names. A local time that does not exist (the hour skipped when clocks go forward) or
exists twice (the hour repeated when they go back) is refused rather than guessed. A weekly rule
keeps its local time and zone and becomes an APScheduler ``CronTrigger`` in that zone, which is what
keeps 09:00 at 09:00 across DST changes.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from newsletter.config import WEEKDAYS
from newsletter.errors import BadInput

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

__all__ = [
    "last_occurrence",
    "local_instant",
    "parse_clock",
    "parse_weekday",
    "parse_zone",
    "show",
    "weekly_trigger",
]


#: ``2026-11-27 09:00``, ``2026-11-27T09:00:30``: nothing else (``fromisoformat`` takes more).
_LOCAL = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?")
_OFFSET = re.compile(r"T?\d{2}:\d{2}(:\d{2})?(Z|[+-]\d{2}:?\d{2})$")


def parse_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise BadInput(f"unknown time zone {name!r} (use a name such as America/New_York)") from None


def local_instant(text: str, zone: ZoneInfo) -> dt.datetime:
    """The UTC instant that ``YYYY-MM-DD HH:MM`` names in ``zone``."""
    text = text.strip()
    if _OFFSET.search(text):
        raise BadInput(f"--at {text!r}: give the local time without an offset; the zone comes from --tz")
    try:
        if not _LOCAL.fullmatch(text):
            raise ValueError
        naive = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(f"--at {text[:40]!r}: give a local date and time as YYYY-MM-DD HH:MM") from None
    earlier = naive.replace(tzinfo=zone, fold=0)
    later = naive.replace(tzinfo=zone, fold=1)
    if earlier.utcoffset() != later.utcoffset():
        as_utc = earlier.astimezone(dt.UTC)
        if as_utc.astimezone(zone).replace(tzinfo=None) != naive:
            raise BadInput(f"{naive:%Y-%m-%d %H:%M} does not exist in {zone.key}: the clocks skip that hour")
        raise BadInput(
            f"{naive:%Y-%m-%d %H:%M} happens twice in {zone.key} (the clocks go back): pick another "
            "time, or give it in UTC with --tz UTC"
        )
    return earlier.astimezone(dt.UTC)


def parse_weekday(text: str) -> str:
    """``fri``, ``Friday``, ``FRI`` -> ``friday``."""
    value = text.strip().lower()
    matches = [day for day in WEEKDAYS if len(value) >= 3 and day.startswith(value)]
    if len(matches) != 1:
        raise BadInput(f"--day {text!r}: give a weekday, such as fri or friday")
    return matches[0]


def parse_clock(text: str) -> dt.time:
    try:
        value = dt.time.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(f"--time {text!r}: give a local time as HH:MM") from None
    if value.tzinfo is not None or value.second or value.microsecond:
        raise BadInput(f"--time {text!r}: give a local time as HH:MM, without seconds or offset")
    return value


def show(instant: dt.datetime, zone: ZoneInfo) -> str:
    """``2026-11-27 09:00 EST (14:00 UTC)``: what an editor reads back."""
    clock = "%Y-%m-%d %H:%M:%S" if instant.second or instant.microsecond else "%Y-%m-%d %H:%M"
    local = instant.astimezone(zone)
    in_utc = f"{instant.astimezone(dt.UTC).strftime(clock)} UTC"
    return in_utc if zone.key in ("UTC", "Etc/UTC") else f"{local.strftime(clock)} {local:%Z} ({in_utc})"


def weekly_trigger(weekday: str, send_time: dt.time, zone: ZoneInfo) -> CronTrigger:
    from apscheduler.triggers.cron import CronTrigger

    return CronTrigger(
        day_of_week=WEEKDAYS.index(weekday),
        hour=send_time.hour,
        minute=send_time.minute,
        second=0,
        timezone=zone,
    )


def last_occurrence(weekday: str, send_time: dt.time, zone: ZoneInfo, now: dt.datetime) -> dt.datetime:
    """The rule's latest occurrence at or before ``now``, in UTC, as its trigger computes them."""
    trigger = weekly_trigger(weekday, send_time, zone)
    fire = trigger.get_next_fire_time(None, now - dt.timedelta(days=8))
    latest = fire
    while fire is not None and fire <= now:
        latest = fire
        fire = trigger.get_next_fire_time(fire, fire + dt.timedelta(seconds=1))
    assert latest is not None  # a weekly trigger fires within any eight days
    return latest.astimezone(dt.UTC)
