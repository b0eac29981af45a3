"""``newsletter bounces``: the ``smtp`` provider's bounce mailbox, read by hand."""

from __future__ import annotations

from typing import Annotated

import typer

from newsletter.cli.app import ConfigOption, app, console, err_console, fail, settings_or_exit
from newsletter.cli.help import Typer
from newsletter.errors import NewsletterError

__all__ = ["bounces_app"]

bounces_app = Typer(
    help="Bounces, complaints and mailto unsubscribes from the SMTP provider's IMAP mailbox.",
    no_args_is_help=True,
)
app.add_typer(bounces_app, name="bounces")


@bounces_app.command()
def poll(
    once: Annotated[bool, typer.Option("--once", help="Read the mailbox once and exit.")] = False,
    config: ConfigOption = None,
) -> None:
    """Read [bounces] imap_host's folder once: store each message's events, move it to done_folder.

    Exit 0 when the mailbox was read, 1 when it could not be (the next poll tries again).
    """
    from newsletter.bounces import poll as read_mailbox

    if not once:
        err_console.print("newsletter worker polls the mailbox continuously; here, pass --once")
        raise typer.Exit(2)
    settings = settings_or_exit(config)
    try:
        report = read_mailbox(settings, log=lambda line: err_console.print(line))
    except NewsletterError as exc:
        fail(exc)
    console.print(report.describe())
    if report.error:
        raise typer.Exit(1)
