"""``newsletter doctor``: the sending set-up checked line by line (``newsletter.doctor``)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from newsletter.cli.app import ConfigOption, app, console, settings_or_exit

__all__ = ["doctor"]


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (structure in the README).")] = False,
    config: ConfigOption = None,
) -> None:
    """Check DNS (SPF, DMARC, DKIM), the provider account, the subscriber links, webhooks, the service
    and the list's health, each ✔ / ! / ✘ with the fix. Exit 1 when any line fails."""
    from newsletter.doctor.output import lines
    from newsletter.doctor.run import run_doctor

    report = run_doctor(settings_or_exit(config))
    if as_json:
        print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    else:
        for line in lines(report):
            console.print(line)
    raise typer.Exit(report.exit_code)
