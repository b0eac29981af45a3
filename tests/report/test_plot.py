"""The ``--plot`` chart itself: what its axes show, read from the matplotlib figure."""

from __future__ import annotations

import datetime as dt

import pytest

from newsletter.report.model import SendReport
from newsletter.report.plot import chart, top_of_log_axis
from newsletter.store.ledger import SendCounts, SendInfo
from newsletter.store.models import EventKind, SendState
from newsletter.store.reports import EventTally, HourlySeries, LeavingReasons, SendFigures

START = dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC)


def report(head: dict[EventKind, list[int]], *, hours: int = 72) -> SendReport:
    counts = {kind: values + [0] * (hours - len(values)) for kind, values in head.items()}
    send = SendInfo(
        1, "issues/x.yaml", START.date(), "", "S", "h", "outbox", SendState.FINISHED, None, 8,
        None, START, START, START, 0,
    )  # fmt: skip
    tallies = {kind: EventTally(sum(values), 1) for kind, values in counts.items()}
    hourly = HourlySeries(START, hours, counts, {})
    counts_by_state = SendCounts(1, {"accepted": 8}, {})
    return SendReport(SendFigures(send, counts_by_state, tallies, hourly, LeavingReasons({}, ())))


SPARSE = {
    EventKind.DELIVERED: [4],
    EventKind.OPENED: [4, 2, 1, 1],
    EventKind.COMPLAINED: [0, 0, 0, 0, 0, 1],
}


def test_sparse_counts_are_steps_over_the_whole_window_under_the_top_tick() -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import StepPatch

    (axes,) = chart([report(SPARSE)]).axes
    steps = [artist for artist in axes.patches if isinstance(artist, StepPatch)]
    assert len(steps) == 3 and not [line for line in axes.lines if isinstance(line, Line2D)]
    opened = next(step for step in steps if step.get_label() == "Opened")
    values, edges, _ = opened.get_data()
    assert list(values[:5]) == [4, 2, 1, 1, 0] and list(edges[:3]) == [0, 1, 2]  # hour h spans h..h+1
    assert axes.get_xlim() == (0, 72)  # the 72 h promised, not up to the last event
    bottom, top = axes.get_ylim()
    ticks = [tick for tick in axes.get_yticks() if bottom <= tick <= top]
    assert top > 4 and max(ticks) == top  # the busiest hour sits under the top tick


def test_a_log_axis_also_ends_on_a_decade_above_the_busiest_hour() -> None:
    busy = {EventKind.DELIVERED: [4000, 10], EventKind.COMPLAINED: [1]}
    (axes,) = chart([report(busy)]).axes
    assert axes.get_yscale() == "symlog" and axes.get_ylim()[1] == 10_000


@pytest.mark.parametrize(("peak", "top"), [(1, 10), (9, 10), (10, 100), (4000, 10_000), (9500, 100_000)])
def test_top_of_log_axis(peak: int, top: int) -> None:
    assert top_of_log_axis(peak) == top
