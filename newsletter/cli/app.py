"""The Typer application object, the consoles and the options every command shares.

Both consoles print text, never markup: subscriber names, addresses, file paths and error messages
are user data, and to rich ``[/]`` is a syntax error and ``[link=...]`` a hyperlink. So
``markup=False`` and ``emoji=False`` (``:smile:`` stays as typed) for everything printed, and the few
styled words are :class:`rich.text.Text` spans (see :func:`styled`).

Help is click's plain help, and every option that takes a value names it with a metavar in
capitals (``--at "YYYY-MM-DD HH:MM"``, ``--segment EXPR``); the shared ones are defined here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console

from newsletter.cli.help import Typer
from newsletter.errors import NewsletterError

if TYPE_CHECKING:  # configuration means pydantic: loaded by the commands that read it, not --help
    from rich.text import Text

    from newsletter.config import Settings

app = Typer(
    name="newsletter",
    help="Write, check, preview and deliver the weekly newsletter.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help, inherited by every group: conventional ``--segment EXPR`` metavars, flags
    # without one (typer's rich panels print ``--yes <bool>``), and no rich import for ``--help``.
    rich_markup_mode=None,
)
console = Console(soft_wrap=True, highlight=False, markup=False, emoji=False)
err_console = Console(stderr=True, soft_wrap=True, highlight=False, markup=False, emoji=False)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        envvar="NEWSLETTER_CONFIG",
        metavar="FILE",
        help="Path to newsletter.toml (default: ./newsletter.toml, else embedded defaults).",
        show_default=False,
    ),
]


def file_line(label: str, path: Path) -> str:
    """``HTML  out/email.html  69.7 KB``: what a command wrote, with its size."""
    return f"{label:5} {path}  {path.stat().st_size / 1024:.1f} KB"


def settings_or_exit(config: Path | None) -> Settings:
    from newsletter.config import load_settings

    try:
        return load_settings(config)
    except NewsletterError as exc:
        fail(exc)


def styled(label: str, style: str, message: object = "") -> Text:
    """``label`` in ``style``, then ``message`` as plain text: ``error: ...``, ``warning: ...``."""
    from rich.text import Text

    text = Text(label, style=style)
    if message != "":
        text.append(f" {message}")
    return text


def fail(exc: NewsletterError) -> NoReturn:
    """Print a user-facing error and exit with its code (1 failure, 2 bad input)."""
    err_console.print(styled("error:", "bold red", exc))
    raise typer.Exit(exc.exit_code)
