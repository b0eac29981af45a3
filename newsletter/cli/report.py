"""``newsletter report``: what became of an issue's sends, thin over ``newsletter.report``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from newsletter.cli.app import ConfigOption, app, console, fail, file_line, settings_or_exit
from newsletter.errors import NewsletterError

__all__ = ["report"]


@app.command()
def report(
    issue: Annotated[str, typer.Argument(help="The issue file, or its date (YYYY-MM-DD).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (structure in the README).")] = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            metavar="FILE",
            help="Also draw events per hour after each send to FILE.png or FILE.svg.",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Each send's recipients by state, bounces, complaints, unsubscribes, opens and clicks, with rates."""
    from newsletter.report import collect, table
    from newsletter.report import plot as charts

    try:
        if plot is not None:
            charts.plot_format(plot)  # a wrong suffix fails before any work
        settings = settings_or_exit(config)
        reports = collect.collect(settings, issue)
        if plot is not None:
            charts.draw(reports, plot)
    except NewsletterError as exc:
        fail(exc)
    if as_json:
        print(json.dumps([r.as_dict() for r in reports], indent=2))
        return
    for one in reports:
        console.print(table.render(one))
    if plot is not None:
        console.print(file_line("Plot", plot), highlight=False, markup=False)
