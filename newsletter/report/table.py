"""``newsletter report`` as text: one rich table per send.

Everything in a cell is a :class:`rich.text.Text` or plain text printed with markup off: a subject
or segment is the editor's text, and ``[b]`` in it must stay ``[b]``.
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from newsletter.report.model import (
    COMPLAINT_LIMIT,
    COMPLAINT_WARNING,
    HARD_BOUNCE_LIMIT,
    HARD_BOUNCE_WARNING,
    LABELS,
    METRICS,
    ComplaintLevel,
    SendReport,
)
from newsletter.store.models import EventKind
from newsletter.store.preferences import LEAVING_REASONS

__all__ = ["render"]

#: Where the total of events says more than the recipients: five opens by one reader.
_EVENT_NOUNS = {EventKind.OPENED: "opens", EventKind.CLICKED: "clicks"}


def render(report: SendReport) -> Group:
    """The send's heading, its recipients by state, and a row per metric."""
    send = report.figures.send
    audience = f"segment {send.segment!r}" if send.segment else "everyone"
    started = f"started {send.started_at:%Y-%m-%d %H:%M UTC}" if send.started_at else "not started"
    heading = Text(f"Send {send.id}  {send.issue_date}  {send.state}  {audience}  via {send.provider}")
    heading.stylize("bold")
    heading.append(f"\n{send.subject}\n{started}", style="not bold")

    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("")
    table.add_column("recipients", justify="right")
    table.add_column("rate", justify="right")
    table.add_column("")
    counts = report.figures.deliveries
    table.add_row("Recipients", f"{counts.total:,}", "", _states_line(counts.by_state))
    for kind in METRICS:
        table.add_row(*_metric_row(report, kind))
    return Group(heading, table, _leaving(report), _note(report))


#: Notes of leaving readers shown under the table (``--json`` has all of them).
NOTES_SHOWN = 5


def _leaving(report: SendReport) -> Text:
    """Why readers left, where they said so on their page: the reasons by count, the latest notes."""
    leaving = report.figures.leaving
    if not leaving.counts and not leaving.notes:
        return Text("")
    reasons = sorted(leaving.counts.items(), key=lambda item: (-item[1], item[0]))
    text = Text("Why readers left: ", style="bold")
    said = ", ".join(f"{n:,} {LEAVING_REASONS.get(key, key).lower()}" for key, n in reasons)
    text.append(said or "no reason given")
    for note in leaving.notes[:NOTES_SHOWN]:
        text.append(f"\n  “{note}”", style="dim")
    if len(leaving.notes) > NOTES_SHOWN:
        more = len(leaving.notes) - NOTES_SHOWN
        text.append(f"\n  and {more:,} more notes (--json lists them)", style="dim")
    return text


def _states_line(by_state: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {state}" for state, n in by_state.items() if n)


def _metric_row(report: SendReport, kind: EventKind) -> tuple[str, str, str, Text]:
    metric = report.metric(kind)
    if metric is None:
        return LABELS[kind], "", "", Text("not reported", style="dim")
    rate = "n/a" if metric.rate is None else f"{metric.rate:.2%}"
    note = Text(f"of {metric.of}", style="dim")
    if kind in _EVENT_NOUNS:
        note = Text(f"{metric.events:,} {_EVENT_NOUNS[kind]}, of {metric.of}", style="dim")
    if kind is EventKind.COMPLAINED:
        level = report.complaint_level
        if level is ComplaintLevel.OVER_LIMIT:
            note = Text(f"at or over the {COMPLAINT_LIMIT:.1%} bulk-sender limit", style="bold red")
        elif level is ComplaintLevel.WARNING:
            note = Text(f"over {COMPLAINT_WARNING:.1%}: watch it", style="yellow")
    if kind is EventKind.BOUNCED_HARD:
        level = report.hard_bounce_level
        if level is ComplaintLevel.OVER_LIMIT:
            note = Text(f"at or over {HARD_BOUNCE_LIMIT:.0%}: providers review that", style="bold red")
        elif level is ComplaintLevel.WARNING:
            note = Text(f"over {HARD_BOUNCE_WARNING:.0%}: the list has stale addresses", style="yellow")
    return LABELS[kind], f"{metric.recipients:,}", rate, note


def _note(report: SendReport) -> Text:
    if report.deliveries_reported:
        return Text("")
    return Text("the provider reports no deliveries: opens and clicks are over accepted\n", style="dim")
