"""``newsletter send``, ``status`` and ``worker``: thin commands over ``newsletter.delivery``."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from newsletter.store.heartbeats import Heartbeat

from newsletter.cli.app import ConfigOption, app, console, err_console, fail, settings_or_exit
from newsletter.errors import NewsletterError

__all__ = ["send", "status", "worker"]

SegmentOption = Annotated[
    str | None,
    typer.Option("--segment", metavar="EXPR", help='Only this segment, e.g. "tag:press and not tag:staff".'),
]


@contextmanager
def _stop_on_interrupt() -> Iterator[threading.Event]:
    """Ctrl-C (and SIGTERM) set an event instead of raising: batches in flight get recorded."""
    stop = threading.Event()

    def handle(signum: int, frame: Any) -> None:
        if stop.is_set():  # a second Ctrl-C: the editor really wants out
            raise KeyboardInterrupt
        err_console.print(
            "\nstopping after the batches in flight; Ctrl-C again to abort now", highlight=False
        )
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@app.command()
def send(
    issue: Annotated[Path, typer.Argument(help="The issue file to send.")],
    segment: SegmentOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would happen; write nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue a send that paused or stopped.")] = False,
    retry_unknown: Annotated[
        bool,
        typer.Option("--retry-unknown", help="Resend recipients whose outcome is unknown (may send twice)."),
    ] = False,
    test: Annotated[
        list[str] | None,
        typer.Option(
            "--test",
            metavar="ADDR",
            help="Send a [TEST] copy to this address, outside the ledger (repeatable).",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", metavar="N", min=1, max=64, help="Batches in flight per process."),
    ] = None,
    processes: Annotated[
        int | None,
        typer.Option(
            "--processes", metavar="N", min=1, max=64, help="Processes sending at once (uses more cores)."
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Send an issue to the list (or test copies). Refuses an issue that fails `check`."""
    from newsletter.delivery import runner

    settings = settings_or_exit(config)
    try:
        prepared = runner.prepare(issue, settings, links=True)
        for warning in prepared.warnings:
            err_console.print(f"warning {warning}", highlight=False, markup=False)
        if test:
            results = runner.send_test(prepared, settings, test)
            for address, answer in results:
                console.print(f"{address}: {answer}", highlight=False, markup=False)
            if any(answer != "accepted" for _, answer in results):
                raise typer.Exit(1)
            return
        plan = runner.plan(prepared, settings, segment, resume=resume, retry_unknown=retry_unknown)
        console.print(plan.describe(), highlight=False, markup=False)
        if dry_run or plan.nothing_to_do:
            return
        if not yes and not typer.confirm(plan.question):
            raise typer.Exit(1)
        with _stop_on_interrupt() as stop:
            outcome = runner.execute(
                plan, settings, stop=stop, workers=workers, processes=processes, progress=_progress_bar()
            )
    except NewsletterError as exc:
        fail(exc)
    console.print(outcome.summary(), highlight=False, markup=False)
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)


def _progress_bar() -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("sending"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )


@app.command()
def status(
    issue: Annotated[Path | None, typer.Argument(help="Only the sends of this issue file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOption = None,
) -> None:
    """Each send's recipients by state, why it paused or stopped, and its unknown recipients."""
    from newsletter.delivery import runner

    settings = settings_or_exit(config)
    try:
        reports = runner.status(settings, issue)
    except NewsletterError as exc:
        fail(exc)
    if as_json:
        print(json.dumps([report.as_dict() for report in reports], indent=2, default=str))
        return
    if not reports:
        console.print("no sends yet")
    for report in reports:
        console.print(report.describe(), highlight=False, markup=False)
    from newsletter.bounces import last_read

    mailbox = last_read(settings)
    if mailbox:
        console.print(mailbox, highlight=False, markup=False)
    console.print(_worker_line(runner.last_heartbeat(settings)), highlight=False, markup=False)


def _worker_line(heartbeat: Heartbeat | None) -> str:
    import datetime as dt

    if heartbeat is None:
        return "worker: none has run against this database (newsletter worker)"
    ago = int((dt.datetime.now(dt.UTC) - heartbeat.seen_at).total_seconds())
    return f"worker: {heartbeat.worker} last seen {heartbeat.seen_at:%Y-%m-%d %H:%M:%S} UTC ({ago} s ago)"


@app.command()
def worker(
    workers: Annotated[
        int, typer.Option("--workers", metavar="N", min=1, max=64, help="Parallel senders.")
    ] = 1,
    once: Annotated[
        bool, typer.Option("--once", help="Start what is due, send it, and exit when nothing is sending.")
    ] = False,
    poll: Annotated[
        float, typer.Option("--poll", metavar="SECONDS", min=0.1, help="Seconds between looks for work.")
    ] = 2.0,
    config: ConfigOption = None,
) -> None:
    """Start scheduled sends on time and send every running send, until stopped (SIGTERM/Ctrl-C)."""
    from newsletter.schedule.worker import run_worker

    settings = settings_or_exit(config)
    with _stop_on_interrupt() as stop:
        try:
            run_worker(settings, stop=stop, workers=workers, poll=poll, once=once, log=_log)
        except NewsletterError as exc:
            fail(exc)


def _log(message: str) -> None:
    err_console.print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", highlight=False, markup=False)
