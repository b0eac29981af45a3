"""``newsletter archive build``: the web archive as a static site, the pages ``serve`` answers with."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from newsletter.cli.app import ConfigOption, app, console, fail, settings_or_exit
from newsletter.cli.help import Typer
from newsletter.errors import NewsletterError

archive_app = Typer(
    name="archive",
    help="The web archive of every sent issue.",
    no_args_is_help=True,
    add_completion=False,
)


@archive_app.callback()
def archive() -> None:
    """The web archive of every sent issue."""
    # A callback keeps ``archive`` a group with one command, so ``archive build`` stays its name.


app.add_typer(archive_app, name="archive")


@archive_app.command("build")
def build(
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Folder to write the site into.")],
    config: ConfigOption = None,
) -> None:
    """Write the archive (home, index, issue pages, feed, sitemap) as a static site for any host."""
    from newsletter.store.db import open_database
    from newsletter.web.archive import build_site

    settings = settings_or_exit(config)
    try:
        engine = open_database(settings.database.url)
        try:
            summary = build_site(settings, engine, out)
        finally:
            engine.dispose()
    except NewsletterError as exc:
        fail(exc)
    console.print(
        f"Wrote {len(summary.files)} files for {summary.issues} published issues to {out}/: "
        f"open {summary.home}, or put the folder on any static host at {settings.newsletter.base_url}"
    )
