"""Every command's ``--help`` names values as Unix tools do, never by their Python type.

Walks the whole command tree, so a command added later is held to the same line: ``ISSUE``,
``[ISSUE]``, ``--segment EXPR``, ``--status [active|pending]``, and flags with no value at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from newsletter.cli import app

runner = CliRunner()
#: typer's own renderings: ``<bool>``, ``<str>``, ``<path>``, ``<int range>``, ``<list[str]>``, ``{issue}``.
PYTHON_TYPE = re.compile(r"<(bool|str|int|float|path|list\[|[a-z]+ range)|\{[a-z_.]+\}|list\[")


def _paths(group: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        yield (*prefix, name)
        if hasattr(command, "commands"):
            yield from _paths(command, (*prefix, name))


COMMANDS = [(), *_paths(typer.main.get_command(app))]


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "newsletter")
def test_help_shows_metavars_not_python_types(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert not PYTHON_TYPE.search(result.output), result.output
    usage = result.output.splitlines()[0]
    assert usage.startswith("Usage: "), usage


def test_help_uses_conventional_names() -> None:
    send = runner.invoke(app, ["send", "--help"], terminal_width=200).output
    assert send.splitlines()[0].endswith("send [OPTIONS] ISSUE")
    for line in ("--segment EXPR", "-y, --yes ", "--test ADDR", "--workers N", "--config FILE"):
        assert line in send
    status = runner.invoke(app, ["status", "--help"], terminal_width=200).output
    assert status.splitlines()[0].endswith("status [OPTIONS] [ISSUE]")
    check = runner.invoke(app, ["check", "--help"], terminal_width=200).output
    assert check.splitlines()[0].endswith("check [OPTIONS] ISSUE...")
    schedule = runner.invoke(app, ["schedule", "--help"], terminal_width=200).output
    assert '--at "YYYY-MM-DD HH:MM"' in schedule and "--tz ZONE" in schedule
    listing = runner.invoke(app, ["schedule", "list", "--help"], terminal_width=200).output
    assert listing.splitlines()[0].endswith("schedule list [OPTIONS]")  # no [ISSUE] of the group
    count = runner.invoke(app, ["subscribers", "count", "--help"], terminal_width=200).output
    assert "--status [pending|active|unsubscribed|bounced|complained]" in count
    assert "--tag TAG" in count
