"""``newsletter demo``: the main job on embedded defaults (what ``scripts/demo.sh`` runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from newsletter.cli.app import ConfigOption, app, console, fail, file_line, settings_or_exit
from newsletter.errors import NewsletterError


@app.command()
def demo(
    out: Annotated[
        Path, typer.Option("--out", metavar="DIR", help="Where to write the rendered issue.")
    ] = Path("out"),
    config: ConfigOption = None,
) -> None:
    """Render the newest issue, import sample subscribers, send it via the outbox, build the web archive."""
    from newsletter.demo import run_demo

    settings = settings_or_exit(config)
    try:
        result = run_demo(settings, out)
    except NewsletterError as exc:
        fail(exc)
    preview, imported = result.preview, result.imported
    note = f" (the packaged sample: no issue files in {settings.paths.issues})" if result.sample else ""
    console.print(f"Rendered {result.issue}{note}")
    console.print("  " + file_line("HTML", preview.html))
    console.print("  " + file_line("Text", preview.text))
    console.print(
        f"Subscribers in {result.database_url}: {imported.added} added, {imported.unchanged} unchanged "
        f"from {imported.path}; {result.active} active"
    )
    if result.sent is None:
        provider = settings.esp.provider
        console.print(f"Not sent: the demo sends only through the outbox (esp.provider is {provider})")
    else:
        verb = "Already sent" if result.already_sent else "Sent"
        console.print(
            f"{verb} to {result.sent['accepted']} subscribers through the outbox: one .eml file each in "
            f"{result.outbox}/ (any mail client opens them); `newsletter status` shows the send"
        )
    if result.site is not None:
        site = result.site
        console.print(
            f"Web archive of {site.issues} sent issue{'' if site.issues == 1 else 's'}: open {site.home} "
            f"in a browser, or run `newsletter serve` for {settings.newsletter.base_url}/"
        )
