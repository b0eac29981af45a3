"""``newsletter db ...`` and ``newsletter subscribers ...``: thin commands over ``newsletter.store``.

Every command but ``db upgrade`` opens the database with ``open_database``, which refuses a database
that is not at the newest migration and names the command that fixes it. Whatever comes from the user
or the database (addresses, names, tags, paths) is printed as text, never as rich markup: the
consoles in ``cli.app`` have markup off, and table cells are :class:`rich.text.Text`.
"""

from __future__ import annotations

import csv
import enum
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from newsletter.cli.app import ConfigOption, app, console, err_console, fail, settings_or_exit, styled
from newsletter.cli.help import Typer, choices
from newsletter.errors import NewsletterError
from newsletter.store.statuses import SubscriberStatus

if TYPE_CHECKING:  # the store means SQLAlchemy: imported by the commands, not by --help
    from rich.text import Text
    from sqlalchemy import Engine

    from newsletter.store.importer import ImportSummary
    from newsletter.store.models import Subscriber
    from newsletter.store.subscribers import SubscriberRepository

__all__ = ["db_app", "subscribers_app"]

subscribers_app = Typer(help="Manage the subscriber list.", no_args_is_help=True)
db_app = Typer(help="Create and migrate the database.", no_args_is_help=True)
app.add_typer(subscribers_app, name="subscribers")
app.add_typer(db_app, name="db")


class ImportStatus(enum.StrEnum):
    """What an import may make of a new address: nobody is imported as having left."""

    ACTIVE = "active"
    PENDING = "pending"


EmailArg = Annotated[str, typer.Argument(help="The subscriber's email address.")]
StatusOption = Annotated[
    SubscriberStatus | None,
    typer.Option(
        "--status", metavar=choices(SubscriberStatus), case_sensitive=False, help="Only this status."
    ),
]
TagOption = Annotated[
    list[str] | None,
    typer.Option("--tag", metavar="TAG", help="Only subscribers with this tag (repeatable)."),
]
SegmentOption = Annotated[
    str | None,
    typer.Option("--segment", metavar="EXPR", help='A tag expression, e.g. "tag:press and not tag:staff".'),
]


@contextmanager
def _engine(config: Path | None, *, migrated: bool = True) -> Iterator[Engine]:
    """The configured database; ``migrated`` refuses one that is not at the newest revision.

    Every expected failure (a bad ``database.url``, a missing file, an old or unknown revision, and
    whatever the command's body raises as ``NewsletterError``) ends as one line and its exit code.
    """
    from newsletter.store.db import make_engine, open_database

    settings = settings_or_exit(config)
    url = settings.database.url
    try:
        engine = open_database(url) if migrated else make_engine(url)
    except NewsletterError as exc:
        fail(exc)
    try:
        yield engine
    except NewsletterError as exc:
        fail(exc)
    finally:
        engine.dispose()


@contextmanager
def _repository(config: Path | None, *, read_only: bool = False) -> Iterator[SubscriberRepository]:
    """One transaction around the command: committed if it succeeds, rolled back if not."""
    from newsletter.store.db import session_scope
    from newsletter.store.subscribers import SubscriberRepository

    with _engine(config) as engine, session_scope(engine, read_only=read_only) as session:
        yield SubscriberRepository(session)


# -- db ------------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Create the database or migrate it to the newest revision."""
    from newsletter.store.db import current_revision, upgrade

    with _engine(config, migrated=False) as engine:
        before = current_revision(engine)
        upgrade(engine)
        after = current_revision(engine)
    change = "already current" if before == after else f"upgraded from {before or 'empty'}"
    console.print(f"database at revision {after} ({change})")


@db_app.command("current")
def db_current(config: ConfigOption = None) -> None:
    """Show the database's revision and the newest one; exit 1 if they differ (or it is missing)."""
    from newsletter.store.db import current_revision, head_revision, sqlite_file

    settings = settings_or_exit(config)
    try:
        path = sqlite_file(settings.database.url)
    except NewsletterError as exc:
        fail(exc)
    head = head_revision()
    if path is not None and not path.exists():  # connecting would create it
        console.print(f"current: none (database file {path} does not exist)\nnewest:  {head}")
        raise typer.Exit(1)
    with _engine(config, migrated=False) as engine:
        current = current_revision(engine)
    console.print(f"current: {current or 'empty'}\nnewest:  {head}")
    if current != head:
        raise typer.Exit(1)


# -- subscribers ---------------------------------------------------------------------------------


def _tags(subscriber: Subscriber) -> str:
    return ", ".join(tag.name for tag in subscriber.tags)


def _cell(value: object) -> Text:
    """A table cell that is exactly the value: rich would read markup in a plain ``str`` cell."""
    from rich.text import Text

    return Text("" if value is None else str(value))


@subscribers_app.command("add")
def add(
    email: EmailArg,
    name: Annotated[str | None, typer.Option(metavar="NAME", help="Display name.")] = None,
    tag: Annotated[list[str] | None, typer.Option(metavar="TAG", help="A tag (repeatable).")] = None,
    pending: Annotated[bool, typer.Option(help="Add as pending (awaiting confirmation).")] = False,
    resubscribe: Annotated[
        bool, typer.Option(help="The person left earlier and asked to come back.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Add one subscriber; you confirm that they consented."""
    status = SubscriberStatus.PENDING if pending else SubscriberStatus.ACTIVE
    with _repository(config) as repo:
        subscriber = repo.add(email, name=name, tags=tag or [], status=status, resubscribe=resubscribe)
    console.print(f"added {subscriber.email} ({subscriber.status})")


@subscribers_app.command("remove")
def remove(email: EmailArg, config: ConfigOption = None) -> None:
    """Unsubscribe an address at once; it is never mailed or re-imported again."""
    with _repository(config) as repo:
        subscriber = repo.unsubscribe(email)
    console.print(f"{subscriber.email} is {subscriber.status}")


@subscribers_app.command("forget")
def forget(
    emails: Annotated[list[str], typer.Argument(help="The addresses to erase.", metavar="EMAIL...")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    config: ConfigOption = None,
) -> None:
    """Erase everything about addresses except a hash that keeps each suppressed.

    The rows are deleted and their bytes removed from the database files (on PostgreSQL by
    rewriting the subscribers table, which locks it for a moment: give many addresses at once).
    Backups, replicas and archived write-ahead logs keep the data until they are rotated.
    Exit 1 if the files could not be cleaned; running the same command again finishes it.
    """
    from newsletter.store import erasure

    listed = ", ".join(email.strip() for email in emails)
    if not yes and not typer.confirm(f"Erase all data about {listed}? This cannot be undone"):
        raise typer.Exit(1)
    with _engine(config) as engine:
        done = erasure.forget(engine, emails)
    for email, result in done.forgotten:
        if result.erased:
            console.print(f"erased {email}; only a hash remains, which keeps it suppressed ({result.reason})")
        else:
            console.print(f"{email} was not a subscriber; its hash is now suppressed ({result.reason})")
    if not done.scrub.complete:
        err_console.print(styled("warning:", "yellow", done.scrub.detail))
        err_console.print(done.limits)
        raise typer.Exit(1)
    console.print(f"{done.scrub.detail}; {done.limits}")


@subscribers_app.command("show")
def show(email: EmailArg, config: ConfigOption = None) -> None:
    """Show one subscriber, with their consent record."""
    from rich.table import Table

    with _repository(config, read_only=True) as repo:
        subscriber = repo.get_by_email(email)
        suppression = repo.get_suppression(email) if subscriber is None else None
    if subscriber is None:
        detail = (
            f"; suppressed ({suppression.reason}) since {suppression.created_at:%Y-%m-%d}"
            if (suppression)
            else ""
        )
        fail(NewsletterError(f"{email.strip()} is not a subscriber{detail}"))
    table = Table(show_header=False, box=None)
    for label, value in (
        ("email", subscriber.email),
        ("name", subscriber.name),
        ("status", subscriber.status),
        ("tags", _tags(subscriber)),
        ("source", subscriber.source),
        ("attributes", ", ".join(f"{k}={v}" for k, v in sorted(subscriber.attributes.items()))),
        ("created", subscriber.created_at),
        ("confirmed", subscriber.confirmed_at),
        # One column holds when the person left, whichever way: label it with that way.
        (_left_label(subscriber.status), subscriber.unsubscribed_at),
        ("consent at", subscriber.consent_at),
        ("consent how", subscriber.consent_method),
        ("consent ip", subscriber.consent_ip),
    ):
        table.add_row(label, _cell(value))
    console.print(table)


def _left_label(status: SubscriberStatus) -> str:
    """``bounced`` for a bounced subscriber's leaving time, ``unsubscribed`` for one still here."""
    left = (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED)
    return status.value if status in left else "unsubscribed"


@subscribers_app.command("count")
def count(
    status: StatusOption = None,
    tag: TagOption = None,
    segment: SegmentOption = None,
    config: ConfigOption = None,
) -> None:
    """Count subscribers; with no filter, show the count of each status.

    With --tag or --segment and no --status, count who would receive an issue sent to them now
    (active, address not suppressed: what `send --segment` would snapshot).
    """
    with _repository(config, read_only=True) as repo:
        if status is None and not tag and not segment:
            for each, n in repo.counts_by_status().items():
                console.print(f"{each.value:13} {n:>10,}")
            console.print(f"{'suppressed':13} {repo.count_suppressions():>10,}")
            return
        if status is None:
            console.print(repo.count_audience(tags=tag or [], segment=segment))
            return
        console.print(repo.count(status=status, tags=tag or [], segment=segment))


@subscribers_app.command("list")
def list_(
    status: StatusOption = None,
    tag: TagOption = None,
    segment: SegmentOption = None,
    limit: Annotated[int, typer.Option(min=1, metavar="N", help="At most this many.")] = 50,
    config: ConfigOption = None,
) -> None:
    """List subscribers, oldest first: a table on a terminal; tab-separated lines, with a header and
    nothing cut short, when piped."""
    with _repository(config, read_only=True) as repo:
        found = repo.find(status=status, tags=tag or [], segment=segment, limit=limit)
    rows = [(s.email, s.name or "", s.status.value, _tags(s), f"{s.created_at:%Y-%m-%d}") for s in found]
    header = ("email", "name", "status", "tags", "created")
    if not sys.stdout.isatty():  # for cut, awk and sort: a table would be cut to 80 columns
        writer = csv.writer(sys.stdout, dialect="excel-tab", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return
    from rich.table import Table

    table = Table(*header)
    for row in rows:
        table.add_row(*(_cell(value) for value in row))
    console.print(table)


def _print_summary(summary: ImportSummary) -> None:
    for warning in summary.warnings:
        err_console.print(styled("warning:", "yellow", warning))
    for reject in summary.rejects:
        err_console.print(f"{summary.path}:{reject.line}: {reject.reason}")
    if summary.invalid > len(summary.rejects):
        err_console.print(f"... and {summary.invalid - len(summary.rejects):,} more bad rows")
    console.print(
        f"{summary.rows:,} rows: {summary.added:,} added, {summary.updated:,} updated, "
        f"{summary.unchanged:,} unchanged, {summary.skipped_total:,} skipped"
    )
    for reason, n in sorted(summary.skipped.items()):
        console.print(f"  skipped, {reason}: {n:,}")
    if summary.rejects_path is not None:
        console.print(f"skipped rows written to {summary.rejects_path}")


@subscribers_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="A UTF-8 CSV file with an 'email' column.")],
    status: Annotated[
        ImportStatus,
        typer.Option(metavar=choices(ImportStatus), case_sensitive=False, help="Status of new subscribers."),
    ] = ImportStatus.ACTIVE,
    tag: Annotated[list[str] | None, typer.Option(metavar="TAG", help="Tag every imported row.")] = None,
    config: ConfigOption = None,
) -> None:
    """Import subscribers from CSV. Exit 2 if some rows were bad (the others are imported)."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from newsletter.store.db import writing
    from newsletter.store.importer import import_csv

    with (
        _engine(config) as engine,
        writing(engine).connect() as conn,
        Progress(
            TextColumn("importing"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
        ) as progress,
    ):
        task = progress.add_task("import", total=file.stat().st_size if file.is_file() else None)
        summary = import_csv(
            conn,
            file,
            status=SubscriberStatus(status.value),
            tags=tag or [],
            on_progress=lambda done: progress.update(task, completed=done),
        )
    _print_summary(summary)
    if summary.invalid:
        raise typer.Exit(2)


@subscribers_app.command("export")
def export(
    out: Annotated[Path | None, typer.Option(metavar="FILE", help="Write here instead of to stdout.")] = None,
    status: StatusOption = None,
    config: ConfigOption = None,
) -> None:
    """Export subscribers as CSV that `subscribers import` reads back unchanged."""
    with _repository(config, read_only=True) as repo:
        header, rows = repo.export_rows(status=status)
        handle = out.open("w", encoding="utf-8", newline="") if out else sys.stdout
        try:
            writer = csv.writer(handle)
            writer.writerow(header)
            written = sum(1 for row in rows if writer.writerow(row) is not None)
        finally:
            if out:
                handle.close()
    if out:
        err_console.print(f"exported {written:,} subscribers to {out}")
