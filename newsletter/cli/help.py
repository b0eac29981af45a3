"""How ``--help`` reads: usage lines and argument names as Unix tools print them.

Typer's own plain help writes ``send [OPTIONS] {issue}`` and lists ``issue <path>``: a Python type
where a reader expects a name. Here an argument is its metavar, or its name in capitals:
``send [OPTIONS] ISSUE``, ``status [OPTIONS] [ISSUE]``, ``check [OPTIONS] ISSUE...``. Options keep
typer's records; each one that takes a value names it with a ``metavar`` where it is declared
(``--segment EXPR``), and flags have none. :class:`Typer` makes these the defaults for every
command and group of the CLI, so a new command gets them without asking.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

__all__ = ["Command", "Group", "Typer", "argument_name", "choices"]


def argument_name(param: Any) -> str:
    """``ISSUE``, or ``ISSUE...`` for one that takes many; a declared metavar is used as it is."""
    if param.metavar:
        return str(param.metavar)
    name = str(param.name).upper()
    return f"{name}..." if param.nargs != 1 else name


def choices(values: type[enum.Enum]) -> str:
    """``[active|pending]``: an option's metavar from the enum it accepts, as click writes choices."""
    return "[" + "|".join(str(member.value) for member in values) + "]"


def _usage_pieces(command: Any, ctx: Any) -> list[str]:
    pieces = [command.options_metavar] if command.options_metavar else []
    for param in command.get_params(ctx):
        if isinstance(param, TyperArgument):
            name = argument_name(param)
            pieces.append(name if param.required else f"[{name}]")
        else:
            pieces.extend(param.get_usage_pieces(ctx))
    return pieces


def _format_parameters(command: Any, ctx: Any, formatter: Any) -> None:
    arguments, options = [], []
    for param in command.get_params(ctx):
        if param.hidden:
            continue
        if isinstance(param, TyperArgument):
            arguments.append((argument_name(param), param.help or ""))
        elif (record := param.get_help_record(ctx)) is not None:
            options.append(record)
    for title, rows in (("Arguments", arguments), ("Options", options)):
        if rows:
            with formatter.section(title):
                formatter.write_dl(rows)


class Command(TyperCommand):
    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return _usage_pieces(self, ctx)

    def format_options(self, ctx: Any, formatter: Any) -> None:
        _format_parameters(self, ctx, formatter)


class Group(TyperGroup):
    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [*_usage_pieces(self, ctx), self.subcommand_metavar]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        _format_parameters(self, ctx, formatter)
        self.format_commands(ctx, formatter)


class Typer(typer.Typer):
    """``typer.Typer`` whose groups and commands print conventional help by default."""

    def __init__(self, *, cls: type[TyperGroup] | None = Group, **options: Any) -> None:
        super().__init__(cls=cls, **options)

    def command(  # the same call as typer's, with a different default class
        self, name: str | None = None, *, cls: type[TyperCommand] | None = Command, **options: Any
    ) -> Callable[[Any], Any]:
        return super().command(name, cls=cls, **options)
