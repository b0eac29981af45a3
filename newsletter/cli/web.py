"""``newsletter web form``: the sign-up form as an HTML snippet another site can paste."""

from __future__ import annotations

import typer

from newsletter.cli.app import ConfigOption, app, settings_or_exit
from newsletter.cli.help import Typer

web_app = Typer(
    name="web",
    help="The reader's pages of `newsletter serve` (sign-up, manage).",
    no_args_is_help=True,
    add_completion=False,
)


@web_app.callback()
def web() -> None:
    """The reader's pages of `newsletter serve` (sign-up, manage)."""
    # A callback keeps ``web`` a group with one command, so ``web form`` stays its name.


app.add_typer(web_app, name="web")


@web_app.command("form")
def form(config: ConfigOption = None) -> None:
    """Print the sign-up form as HTML for another site to paste; it posts to BASE_URL/subscribe."""
    from newsletter.web.signup import embed_snippet

    typer.echo(embed_snippet(settings_or_exit(config)), nl=False)
