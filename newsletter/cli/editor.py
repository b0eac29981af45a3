"""Editor commands: ``draft``, ``check`` and ``preview``."""

from __future__ import annotations

import contextlib
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
    from newsletter.config import Settings
    from newsletter.content.loader import Problem

DEFAULT_PREVIEW_PORT = 8025


def _print_problems(problems: list[Problem]) -> None:
    for problem in problems:
        style = "red" if problem.severity == "error" else "yellow"
        err_console.print(styled(problem.severity, style, problem))


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
    links: Annotated[
        bool, typer.Option("--links", help="Also fetch every URL the email carries (cached per URL).")
    ] = False,
    fresh: Annotated[bool, typer.Option("--fresh", help="With --links: ignore the link cache.")] = False,
    config: ConfigOption = None,
) -> None:
    """Validate and lint issue files. Exit 0 clean, 1 on a failed check, 2 on a malformed file.

    With --links, every link and image of the email is fetched too: 4xx/5xx, DNS, TLS, timeouts
    and redirect loops fail; permanent redirects, redirects to another site and oversized or
    non-image images warn.
    """
    from newsletter.content.loader import IssueFileError, load_issue
    from newsletter.render.checks import check_issue

    if fresh and not links:
        raise typer.BadParameter("--fresh only applies to --links", param_hint="--fresh")
    settings = settings_or_exit(config)
    problems: list[Problem] = []
    malformed = False
    for path in issues:
        try:
            loaded = load_issue(path)
            found = check_issue(loaded, settings.newsletter)
            if links:
                from newsletter.checks.links import check_issue_links

                found += check_issue_links(loaded, settings, fresh=fresh)
            problems += sorted(found, key=lambda problem: (problem.line, problem.column))
        except IssueFileError as exc:
            problems += exc.problems
            malformed = True
        except NewsletterError as exc:
            fail(exc)
    errors = [problem for problem in problems if problem.severity == "error"]
    if as_json:
        print(json.dumps([problem.as_dict() for problem in problems], indent=2))
    else:
        _print_problems(problems)
        summary = f"{len(issues)} file(s): {len(errors)} error(s), {len(problems) - len(errors)} warning(s)"
        err_console.print(summary)
    raise typer.Exit(2 if malformed else 1 if errors else 0)


@app.command()
def preview(
    issue: Annotated[Path, typer.Argument(metavar="ISSUE", help="The issue file to render.")],
    out: Annotated[
        Path | None, typer.Option("--out", metavar="DIR", help="Directory for email.html and email.txt.")
    ] = None,
    screenshot: Annotated[
        bool, typer.Option("--screenshot", help="Also write PNGs at 375 and 600 px wide.")
    ] = False,
    as_address: Annotated[
        str | None,
        typer.Option("--as", metavar="ADDR", help="Fill name and email from this subscriber (database)."),
    ] = None,
    watch: Annotated[
        bool,
        typer.Option("--watch", help="Serve a live preview on 127.0.0.1 that updates on every save."),
    ] = False,
    port: Annotated[
        int,
        typer.Option(
            "--port", metavar="PORT", min=0, max=65535, help="Port for --watch (a free one if busy; 0: any)."
        ),
    ] = DEFAULT_PREVIEW_PORT,
    config: ConfigOption = None,
) -> None:
    """Render an issue as a reader gets it (slots filled) and print check's findings.

    With --out: write DIR/email.html and DIR/email.txt (then PNGs with --screenshot). With --watch:
    serve a page with the email at 375 and 600 px, light and dark, the text part and the findings,
    re-rendered on every save. Ctrl-C stops it.
    """
    from newsletter.preview import subscriber_values

    settings = settings_or_exit(config)
    if out is None and not watch:
        raise typer.BadParameter("give --out DIR, or --watch for the live preview", param_hint="--out")
    if screenshot and out is None:
        raise typer.BadParameter("the PNGs go next to the HTML: give --out DIR", param_hint="--screenshot")
    try:
        values = None if as_address is None else subscriber_values(settings, as_address)
        if out is not None:
            _write_files(issue, out, settings, values, screenshot=screenshot)
        if watch:
            _serve_live(issue, settings, values, port)
    except NewsletterError as exc:
        fail(exc)


def _write_files(
    issue: Path, out: Path, settings: Settings, values: dict[str, str] | None, *, screenshot: bool
) -> None:
    """Files first, findings next, screenshots last: a missing browser loses only the PNGs."""
    from newsletter.preview import screenshot_preview, write_preview

    files = write_preview(issue, out, settings.newsletter, values=values)
    console.print(file_line("HTML", files.html))
    console.print(file_line("Text", files.text))
    _print_problems(files.preview.findings)
    errors = len(files.preview.errors)
    warnings = len(files.preview.findings) - errors
    note = "; send would refuse this issue" if errors else ""
    err_console.print(f"check: {errors} error(s), {warnings} warning(s){note}")
    if screenshot:
        for shot in screenshot_preview(files, out):
            console.print(f"PNG   {shot}")


def _serve_live(issue: Path, settings: Settings, values: dict[str, str] | None, port: int) -> None:
    from newsletter.errors import BadInput
    from newsletter.web.preview import serve_preview  # uvicorn and watchfiles load only here

    if not issue.is_file():  # a typo would otherwise serve a page waiting for a file never written
        raise BadInput(f"{issue}: no such file")
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a live preview ends: exit 0
        serve_preview(issue, settings.newsletter, values, port=port, announce=console.print)
