"""``newsletter schedule``: thin commands over ``newsletter.schedule.service``.

``schedule ISSUE --at TIME`` and the subcommands (``list``, ``cancel``, ``move``, ``weekly``) share
one group: :class:`IssueOrCommand` sends a first word that names a subcommand to it, and anything
else to the group's own ISSUE argument, so neither form needs a made-up verb.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from newsletter.cli.app import ConfigOption, app, console, err_console, fail, settings_or_exit
from newsletter.cli.help import Group, Typer
from newsletter.errors import NewsletterError

__all__ = ["schedule_app"]


class IssueOrCommand(Group):
    """A group whose first word is either a subcommand or the group's own ISSUE argument.

    Click would read any first word as ISSUE (``list`` included), so a known subcommand name is
    routed to the subcommand before the group parses anything. An issue file that happens to be
    called like a subcommand is still reachable as ``./list``.
    """

    allow_interspersed_args = True  # ``schedule ISSUE --at …`` and ``schedule --at … ISSUE``

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] in self.commands:
            super().parse_args(ctx, [])  # the group's own parameters take their defaults
            ctx._protected_args, ctx.args = args[:1], args[1:]
            return list(ctx.args)
        rest = super().parse_args(ctx, args)
        if ctx._protected_args:
            ctx.fail(f"unexpected argument {ctx._protected_args[0]!r}")
        return rest

    def get_params(self, ctx: Any) -> list[Any]:
        """Without ISSUE when asked for a subcommand's usage line: ``schedule list``, not
        ``schedule [ISSUE] list`` (click puts a group's arguments in its subcommands' paths)."""
        params: list[Any] = super().get_params(ctx)
        if ctx.command is self:
            return params
        return [param for param in params if param.param_type_name != "argument"]


schedule_app = Typer(
    cls=IssueOrCommand,
    invoke_without_command=True,
    help='Schedule an issue: `newsletter schedule ISSUE --at "2026-11-27 09:00"`; or list, cancel, '
    "move, and a standing weekly rule. `newsletter worker` sends them on time.",
)
app.add_typer(schedule_app, name="schedule")

AT_METAVAR = '"YYYY-MM-DD HH:MM"'  # quoted as it must be typed: one word with a space in it
SegmentOption = Annotated[
    str | None,
    typer.Option("--segment", metavar="EXPR", help='Only this segment, e.g. "tag:press and not tag:staff".'),
]
AtOption = Annotated[
    str | None,
    typer.Option(
        "--at",
        metavar=AT_METAVAR,
        help='Local date and time, "YYYY-MM-DD HH:MM" (in the newsletter\'s zone).',
    ),
]
TzOption = Annotated[
    str | None,
    typer.Option("--tz", metavar="ZONE", help="Read --at in this zone (default: the newsletter's timezone)."),
]


@schedule_app.callback()
def schedule(
    ctx: typer.Context,
    issue: Annotated[
        Path | None, typer.Argument(metavar="ISSUE", help="The issue file to schedule.", show_default=False)
    ] = None,
    at: AtOption = None,
    tz: TzOption = None,
    segment: SegmentOption = None,
    config: ConfigOption = None,
) -> None:
    """Schedule ISSUE to go out at --at (checked now, and again when it goes out)."""
    if ctx.invoked_subcommand is not None:
        return
    if issue is None and not at:  # bare `newsletter schedule`: the help, as for other groups
        console.print(ctx.get_help())
        raise typer.Exit(2)
    if issue is None or not at:
        err_console.print('error: give the issue file and --at, e.g. --at "2026-11-27 09:00"')
        raise typer.Exit(2)
    from newsletter.schedule import service

    settings = settings_or_exit(config)
    try:
        scheduled = service.schedule_issue(settings, issue, at, tz=tz, segment=segment or "")
    except NewsletterError as exc:
        fail(exc)
    for warning in scheduled.warnings:
        err_console.print(f"warning {warning}", highlight=False, markup=False)
    console.print(scheduled.describe())


@schedule_app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOption = None,
) -> None:
    """Scheduled sends (local and UTC time) and standing weekly rules."""
    from newsletter.schedule import service

    settings = settings_or_exit(config)
    try:
        listing = service.listing(settings)
    except NewsletterError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(listing.as_dict(), indent=2))
    else:
        console.print(listing.describe())


@schedule_app.command()
def cancel(
    issue: Annotated[Path, typer.Argument(help="The issue file (or its date, 2026-11-27).")],
    segment: SegmentOption = None,
    config: ConfigOption = None,
) -> None:
    """Call off a scheduled send; it stays in `status` as cancelled."""
    from newsletter.schedule import service

    settings = settings_or_exit(config)
    try:
        send = service.cancel(settings, issue, segment=segment or "")
    except NewsletterError as exc:
        fail(exc)
    console.print(f"Send {send.id} of {send.issue_file} cancelled.")


@schedule_app.command()
def move(
    issue: Annotated[Path, typer.Argument(help="The issue file (or its date, 2026-11-27).")],
    at: Annotated[
        str, typer.Option("--at", metavar=AT_METAVAR, help='The new local date and time, "YYYY-MM-DD HH:MM".')
    ],
    tz: TzOption = None,
    segment: SegmentOption = None,
    config: ConfigOption = None,
) -> None:
    """Give a scheduled send a new time."""
    from newsletter.schedule import service

    settings = settings_or_exit(config)
    try:
        scheduled = service.move(settings, issue, at, tz=tz, segment=segment or "")
    except NewsletterError as exc:
        fail(exc)
    console.print(scheduled.describe())


@schedule_app.command()
def weekly(
    day: Annotated[str | None, typer.Option("--day", metavar="DAY", help="Weekday: mon … sun.")] = None,
    time: Annotated[str | None, typer.Option("--time", metavar="HH:MM", help="Local time, HH:MM.")] = None,
    off: Annotated[bool, typer.Option("--off", help="Remove the standing rule.")] = False,
    segment: SegmentOption = None,
    config: ConfigOption = None,
) -> None:
    """A standing rule: every --day at --time (newsletter's zone), send that day's issue file if it
    passes `check`; if it is missing or fails, nothing is sent and the editors are told."""
    from newsletter.schedule import service

    settings = settings_or_exit(config)
    try:
        if off:
            rule = service.remove_weekly(settings, segment=segment or "")
            console.print(f"Weekly rule {rule.id} removed ({rule.describe()}).")
            return
        if not day or not time:
            err_console.print("error: give --day and --time (or --off)")
            raise typer.Exit(2)
        rule = service.set_weekly(settings, day, time, segment=segment or "")
    except NewsletterError as exc:
        fail(exc)
    console.print(f"Weekly rule {rule.id}: {rule.describe()}.")
