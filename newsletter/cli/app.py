"""The Typer application object, the consoles and the options every command shares.

Both consoles print text, never markup: subscriber names, addresses, file paths and error messages
are user data, and to rich ``[/]`` is a syntax error and ``[link=...]`` a hyperlink. So
``markup=False`` and ``emoji=False`` (``:smile:`` stays as typed) for everything printed, and the few
styled words are :class:`rich.text.Text` spans (see :func:`styled`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from newsletter.config import Settings, load_settings
from newsletter.errors import NewsletterError

app = typer.Typer(
    name="newsletter",
    help="Write, check, preview and deliver the weekly newsletter.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(soft_wrap=True, highlight=False, markup=False, emoji=False)
err_console = Console(stderr=True, soft_wrap=True, highlight=False, markup=False, emoji=False)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        envvar="NEWSLETTER_CONFIG",
        help="Path to newsletter.toml (default: ./newsletter.toml, else embedded defaults).",
        show_default=False,
    ),
]


def file_line(label: str, path: Path) -> str:
    """``HTML  out/email.html  69.7 KB``: what a command wrote, with its size."""
    return f"{label:5} {path}  {path.stat().st_size / 1024:.1f} KB"


def settings_or_exit(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except NewsletterError as exc:
        fail(exc)


def styled(label: str, style: str, message: object = "") -> Text:
    """``label`` in ``style``, then ``message`` as plain text: ``error: ...``, ``warning: ...``."""
    text = Text(label, style=style)
    if message != "":
        text.append(f" {message}")
    return text


def fail(exc: NewsletterError) -> NoReturn:
    """Print a user-facing error and exit with its code (1 failure, 2 bad input)."""
    err_console.print(styled("error:", "bold red", exc))
    raise typer.Exit(exc.exit_code)
