"""``newsletter demo``: the main job on embedded defaults (what ``scripts/demo.sh`` runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from newsletter.cli.app import ConfigOption, app, console, fail, file_line, settings_or_exit
from newsletter.demo import run_demo
from newsletter.errors import NewsletterError


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Where to write the rendered issue.")] = Path("out"),
    config: ConfigOption = None,
) -> None:
    """Render the newest issue, migrate the database and import the sample subscribers."""
    settings = settings_or_exit(config)
    try:
        result = run_demo(settings, out)
    except NewsletterError as exc:
        fail(exc)
    preview, imported = result.preview, result.imported
    console.print(f"Rendered {result.issue}")
    console.print("  " + file_line("HTML", preview.html))
    console.print("  " + file_line("Text", preview.text))
    console.print(
        f"Subscribers in {result.database_url}: {imported.added} added, {imported.unchanged} unchanged "
        f"from {imported.path}; {result.active} active"
    )
