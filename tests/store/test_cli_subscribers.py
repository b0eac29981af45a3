"""The ``db`` and ``subscribers`` commands, end to end through Typer, on both databases."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsletter.cli import app


@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", db_url)
    monkeypatch.chdir(tmp_path)  # no newsletter.toml here: embedded defaults + the URL above
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


def test_commands_refuse_an_unmigrated_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", f"sqlite:///{tmp_path / 'new.db'}")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    refused = runner.invoke(app, ["subscribers", "count"])
    assert refused.exit_code == 1
    assert "run `newsletter db upgrade`" in refused.output
    done = runner.invoke(app, ["db", "upgrade"])
    assert done.exit_code == 0, done.output
    assert "upgraded from empty" in done.output
    assert runner.invoke(app, ["db", "upgrade"]).output.strip().endswith("(already current)")
    assert runner.invoke(app, ["db", "current"]).exit_code == 0
    assert runner.invoke(app, ["subscribers", "count"]).exit_code == 0


def test_add_show_count_list_remove_forget(cli) -> None:
    assert cli("subscribers", "add", "Ann@Example.com", "--name", "Ann", "--tag", "press").exit_code == 0
    assert cli("subscribers", "add", "bob@example.com", "--tag", "staff", "--pending").exit_code == 0
    again = cli("subscribers", "add", "ann@example.com")
    assert again.exit_code == 1 and "already subscribed" in again.output
    shown = cli("subscribers", "show", "ann@example.com")
    assert shown.exit_code == 0 and "Ann@Example.com" in shown.output and "press" in shown.output
    assert cli("subscribers", "count", "--tag", "press").output.strip() == "1"
    assert cli("subscribers", "count", "--status", "pending").output.strip() == "1"
    assert cli("subscribers", "count", "--segment", "tag:press or tag:staff").output.strip() == "2"
    bad = cli("subscribers", "count", "--segment", "tag:press and")
    assert bad.exit_code == 2 and "position 14" in bad.output
    assert "active" in cli("subscribers", "count").output
    listed = cli("subscribers", "list", "--limit", "1")
    assert "Ann@Example.com" in listed.output and "bob@example.com" not in listed.output
    assert cli("subscribers", "remove", "ann@example.com").exit_code == 0
    refused = cli("subscribers", "add", "ann@example.com")
    assert refused.exit_code == 1 and "suppressed" in refused.output
    forgotten = cli("subscribers", "forget", "bob@example.com", "--yes")
    assert forgotten.exit_code == 0 and "erased bob@example.com" in forgotten.output
    gone = cli("subscribers", "show", "bob@example.com")
    assert gone.exit_code == 1 and "suppressed (forgotten)" in gone.output
    assert cli("subscribers", "remove", "nobody@example.com").exit_code == 1
    assert cli("subscribers", "add", "not-an-address").exit_code == 2


def test_import_and_export_round_trip(cli, tmp_path: Path) -> None:
    source = tmp_path / "list.csv"
    source.write_text(
        "email,name,tags,city\nann@example.com,Ann,press,Paris\nbad@@example.com,Bad,,\n"
        "bob@example.com,Bob,,\n",
        encoding="utf-8",
    )
    first = cli("subscribers", "import", str(source), "--tag", "imported")
    assert first.exit_code == 2  # one bad row; the others are imported
    assert "list.csv:3: invalid address" in first.output
    assert "3 rows: 2 added, 0 updated, 0 unchanged, 1 skipped" in first.output
    assert (tmp_path / "list.rejects.csv").exists()
    out = tmp_path / "export.csv"
    assert cli("subscribers", "export", "--out", str(out)).exit_code == 0
    with out.open(encoding="utf-8", newline="") as handle:
        exported = list(csv.DictReader(handle))
    assert exported[0] == {
        "email": "ann@example.com",
        "name": "Ann",
        "status": "active",
        "tags": "imported;press",
        "city": "Paris",
    }
    again = cli("subscribers", "import", str(out))
    assert again.exit_code == 0
    assert "2 rows: 0 added, 0 updated, 2 unchanged, 0 skipped" in again.output
    to_stdout = cli("subscribers", "export", "--status", "active")
    assert len(list(csv.reader(io.StringIO(to_stdout.output)))) == 3
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("email,name\nzoe@example.com,Zoë\n".encode("latin-1"))
    refused = cli("subscribers", "import", str(latin1))
    assert refused.exit_code == 2 and "not UTF-8" in refused.output
