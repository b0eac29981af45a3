"""The doctor's report as a reader sees it in a terminal: a heading per section, one marked line
per check, and the fix under every line that is not fine."""

from __future__ import annotations

from collections.abc import Iterator

from rich.text import Text

from newsletter.doctor.model import Report, Status

__all__ = ["lines"]

_STYLES = {Status.OK: "green", Status.WARN: "yellow", Status.FAIL: "bold red"}


def lines(report: Report) -> Iterator[Text]:
    section = None
    for check in report.checks:
        if check.section != section:
            if section is not None:
                yield Text("")
            section = check.section
            yield Text(section, style="bold")
        line = Text("  ")
        line.append(check.status.mark, style=_STYLES[check.status])
        line.append(f" {check.name}: ", style="bold" if check.status is not Status.OK else "")
        line.append(check.found)
        yield line
        if check.fix and check.status is not Status.OK:
            yield Text(f"      fix: {check.fix}", style="dim")
    counts = report.counts()
    yield Text("")
    summary = Text(f"{counts['ok']} fine, {counts['warn']} to look at, {counts['fail']} failing")
    summary.stylize("bold red" if report.failed else "green")
    yield summary
