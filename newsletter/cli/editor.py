"""Editor commands: ``draft``, ``check`` and ``preview``."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from newsletter.cli.app import (
    ConfigOption,
    app,
    console,
    err_console,
    fail,
    file_line,
    settings_or_exit,
    styled,
)
from newsletter.errors import NewsletterError

if TYPE_CHECKING:
    from newsletter.content.loader import Problem


@app.command()
def draft(
    date: Annotated[
        str | None,
        typer.Option(
            metavar="YYYY-MM-DD",
            help="Send date (default: the next send weekday that has no issue file yet).",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Write the next issue file with the standing sections of the last issue as skeletons."""
    from newsletter.content.calendar import next_free_send_date, next_send_date
    from newsletter.content.draft import write_draft

    settings = settings_or_exit(config)
    issues, now = settings.paths.issues, dt.datetime.now(dt.UTC)
    try:
        day = dt.date.fromisoformat(date) if date else next_free_send_date(settings.newsletter, issues, now)
    except ValueError:
        raise typer.BadParameter(f"{date!r} is not a date (YYYY-MM-DD)", param_hint="--date") from None
    try:
        path = write_draft(issues, day)
    except NewsletterError as exc:
        fail(exc)
    console.print(f"Wrote {path}: the issue for {day:%A %Y-%m-%d}")
    if not date and (weeks := (day - next_send_date(settings.newsletter, now)).days // 7):
        skipped = ", ".join(str(day - dt.timedelta(weeks=n)) for n in range(weeks, 0, -1))
        console.print(f"  skipped {skipped}: an issue file exists for that date")


@app.command()
def check(
    issues: Annotated[list[Path], typer.Argument(metavar="ISSUE...", help="Issue files to check.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print problems as JSON.")] = False,
    config: ConfigOption = None,
) -> None:
    """Validate and lint issue files. Exit 0 clean, 1 on a failed check, 2 on a malformed file."""
    from newsletter.content.loader import IssueFileError, load_issue
    from newsletter.render.checks import check_issue

    settings = settings_or_exit(config)
    problems: list[Problem] = []
    malformed = False
    for path in issues:
        try:
            problems += check_issue(load_issue(path), settings.newsletter)
        except IssueFileError as exc:
            problems += exc.problems
            malformed = True
    errors = [problem for problem in problems if problem.severity == "error"]
    if as_json:
        print(json.dumps([problem.as_dict() for problem in problems], indent=2))
    else:
        for problem in problems:
            style = "red" if problem.severity == "error" else "yellow"
            err_console.print(styled(problem.severity, style, problem))
        summary = f"{len(issues)} file(s): {len(errors)} error(s), {len(problems) - len(errors)} warning(s)"
        err_console.print(summary)
    raise typer.Exit(2 if malformed else 1 if errors else 0)


@app.command()
def preview(
    issue: Annotated[Path, typer.Argument(metavar="ISSUE", help="The issue file to render.")],
    out: Annotated[
        Path, typer.Option("--out", metavar="DIR", help="Directory for email.html and email.txt.")
    ],
    screenshot: Annotated[
        bool, typer.Option("--screenshot", help="Also write PNGs at 375 and 600 px wide.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Render an issue to DIR/email.html and DIR/email.txt and print their sizes."""
    from newsletter.preview import write_preview

    settings = settings_or_exit(config)
    try:
        files = write_preview(issue, out, settings.newsletter, screenshots=screenshot)
    except NewsletterError as exc:
        fail(exc)
    console.print(file_line("HTML", files.html))
    console.print(file_line("Text", files.text))
    for shot in files.screenshots:
        console.print(f"PNG   {shot}")
