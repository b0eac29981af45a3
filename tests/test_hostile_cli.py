"""The CLI against hostile input: user data that looks like rich markup, and bad database URLs.

A name, address or path is printed exactly as it is, never read as markup: to rich ``[/]`` closes a
tag that is not open (a crash), ``[link=...]`` makes a hyperlink and ``[bold]`` disappears. A bad
``database.url`` is one line naming the key and exit 2, for every command.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.errors import BadInput
from newsletter.store.addresses import normalize
from newsletter.store.db import make_engine, upgrade

ROOT = Path(__file__).resolve().parents[1]

HOSTILE = [
    "[/]",
    "[link=https://evil.example]click me[/link]",
    "[bold]",
    "[red]Red[/red] [/bold]",
    ":thumbs_up: [b]",
]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'hostile.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture
def cli(sqlite_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("COLUMNS", "250")  # tables wide enough that no cell wraps
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(app, list(args), input=input, catch_exceptions=False)

    return invoke


def test_names_that_look_like_markup_are_printed_as_they_are(cli) -> None:
    for i, name in enumerate(HOSTILE):
        added = cli("subscribers", "add", f"p{i}@example.com", "--name", name, "--tag", "press")
        assert added.exit_code == 0, added.output
        assert f"added p{i}@example.com (active)" in added.output
    listed = cli("subscribers", "list")
    assert listed.exit_code == 0, listed.output
    for name in HOSTILE:
        assert name in listed.output
    for i, name in enumerate(HOSTILE):
        shown = cli("subscribers", "show", f"p{i}@example.com")
        assert shown.exit_code == 0, shown.output
        assert name in shown.output
    exported = cli("subscribers", "export")
    assert all(name in exported.output for name in HOSTILE)


def test_markup_in_errors_and_addresses_is_echoed_as_text(cli, tmp_path: Path) -> None:
    for value in [*HOSTILE, *(f"{value}@example.com" for value in HOSTILE)]:
        with pytest.raises(BadInput) as expected:
            normalize(value)
        refused = cli("subscribers", "show", value)
        assert refused.exit_code == 2, refused.output
        assert refused.output == f"error: {expected.value}\n"  # e.g. "... before the @-sign: '[', ']'."
    config = cli("subscribers", "count", "--config", str(tmp_path / "no[/]such.toml"))
    assert config.exit_code == 2 and "no[/]such.toml does not exist" in config.output
    segment = cli("subscribers", "count", "--segment", "tag:[/]")
    assert segment.exit_code == 2 and "[/]" in segment.output
    date = cli("draft", "--date", "[/]")  # typer's own usage errors
    assert date.exit_code == 2 and "'[/]' is not a date" in date.output
    status = cli("subscribers", "list", "--status", "[bold]")
    assert status.exit_code == 2 and "'[bold]' is not one of" in status.output


def test_an_import_under_a_markup_path_reports_its_rejects_as_text(cli, tmp_path: Path) -> None:
    folder = tmp_path / "lists[" / "]bold"
    folder.mkdir(parents=True)
    source = folder / "[red]list.csv"
    source.write_text(
        "email,name,[/]\n[/]@@example.com,Bad,\nok@example.com,[link=https://evil.example]x[/link],1\n",
        encoding="utf-8",
    )
    imported = cli("subscribers", "import", str(source))
    assert imported.exit_code == 2, imported.output
    assert f"{source}:2: invalid address" in imported.output
    assert "2 rows: 1 added" in imported.output
    shown = cli("subscribers", "show", "ok@example.com")
    assert "[link=https://evil.example]x[/link]" in shown.output
    assert "[/]=1" in shown.output  # the odd column became an attribute, printed as it is
    gone = cli("subscribers", "import", str(folder / "[bold]missing.csv"))
    assert gone.exit_code == 2 and "[bold]missing.csv: no such file" in gone.output


def test_forget_confirmation_and_messages_print_markup_as_text(cli) -> None:
    cli("subscribers", "add", "ann@example.com", "--name", "[/]")
    declined = cli("subscribers", "forget", "ann@example.com", input="n\n")
    assert declined.exit_code == 1 and "Erase all data about ann@example.com?" in declined.output
    forgotten = cli("subscribers", "forget", "ann@example.com", "[b]x@example.com", "--yes")
    assert forgotten.exit_code == 2  # one bad address: nothing is forgotten
    assert forgotten.output.endswith("invalid characters before the @-sign: '[', ']'.\n")
    assert cli("subscribers", "show", "ann@example.com").exit_code == 0


def test_check_prints_problems_in_a_markup_path_as_text(cli, tmp_path: Path) -> None:
    folder = tmp_path / "issues[" / "]"
    folder.mkdir(parents=True)
    issue = folder / "2026-11-27.yaml"
    issue.write_text("title: [/]\nsubject: [bold\n", encoding="utf-8")
    checked = cli("check", str(issue))
    assert checked.exit_code == 2, checked.output
    assert str(issue) in checked.output


# -- bad database URLs ----------------------------------------------------------------------------

BAD_URLS = {
    "nonsense": "'nonsense' is not a database URL",
    "": "is empty",
    "mysql://u@h/db": "'mysql' databases are not supported",
    "postgresql+psycopg://u:hunter2@h:abc/db": (
        "the port in 'postgresql+psycopg://u:***@h:abc/db' is not a number"
    ),
}

COMMANDS = [
    ["db", "upgrade"],
    ["db", "current"],
    ["subscribers", "add", "ann@example.com"],
    ["subscribers", "remove", "ann@example.com"],
    ["subscribers", "forget", "ann@example.com", "--yes"],
    ["subscribers", "show", "ann@example.com"],
    ["subscribers", "count"],
    ["subscribers", "list"],
    ["subscribers", "import", "list.csv"],
    ["subscribers", "export"],
]


@pytest.mark.parametrize("url", list(BAD_URLS))
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_bad_database_url_is_one_line_and_exit_2(
    url: str, command: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "list.csv").write_text("email\nann@example.com\n", encoding="utf-8")
    result = CliRunner().invoke(app, command, catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: database.url: {BAD_URLS[url]}"), result.output
    assert result.output.count("\n") == 1, result.output
    assert "hunter2" not in result.output
    assert list(tmp_path.iterdir()) == [tmp_path / "list.csv"]  # no database file appeared


def _run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "250", **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_installed_command_reports_bad_urls_and_markup_without_a_traceback(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Through ``python -m newsletter``: the real exit code, and stderr is one line."""
    for url in ("nonsense", "postgresql+psycopg://u@h:abc/db"):
        for command in (["db", "upgrade"], ["db", "current"], ["subscribers", "count"]):
            done = _run(*command, env={"NEWSLETTER_DATABASE_URL": url}, cwd=tmp_path)
            assert done.returncode == 2, done.stderr
            assert done.stderr.startswith("error: database.url: ") and done.stderr.count("\n") == 1
            assert "Traceback" not in done.stderr
    env = {"NEWSLETTER_DATABASE_URL": sqlite_url}
    added = _run(
        "subscribers",
        "add",
        "eve@example.com",
        "--name",
        "[/][link=https://evil.example]x",
        env=env,
        cwd=tmp_path,
    )
    assert added.returncode == 0, added.stderr
    listed = _run("subscribers", "list", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "[/][link=https://evil.example]x" in listed.stdout
    assert "\x1b]8;" not in listed.stdout  # no hyperlink escape
    bad = _run("subscribers", "show", "[/]@example.com", env=env, cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr == "error: The email address contains invalid characters before the @-sign: '[', ']'.\n"
