"""The ``db`` and ``subscribers`` commands, end to end through Typer, on both databases."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.store.db import head_revision, make_engine
from newsletter.store.ledger import Ledger
from newsletter.store.privacy import address_hash


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
    # A segment counts who would receive an issue (Ann), not pending Bob, unless --status says so.
    assert cli("subscribers", "count", "--segment", "tag:press or tag:staff").output.strip() == "1"
    both = ("--segment", "tag:press or tag:staff", "--status", "pending")
    assert cli("subscribers", "count", *both).output.strip() == "1"
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


def test_a_revision_from_a_newer_release_stops_every_command_in_one_line(cli, db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'ffff0000'"))
        expected = (
            "error: database is at revision ffff0000, which this version does not know "
            "(was it migrated by a newer release?)"
        )
        for command in (
            ["db", "upgrade"],
            ["db", "current"],
            ["subscribers", "count"],
            ["subscribers", "add", "ann@example.com"],
        ):
            result = cli(*command)
            assert result.exit_code == 2, result.output
            assert result.output.startswith(expected) and result.output.count("\n") == 1, result.output
    finally:
        with engine.begin() as conn:  # the PostgreSQL database is shared by the run's tests
            conn.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": head_revision()})
        engine.dispose()


def test_db_current_does_not_create_a_missing_sqlite_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "missing.db"
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", f"sqlite:///{path}")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["db", "current"], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.output.startswith(f"current: none (database file {path} does not exist)\nnewest:  ")
    for command in (["subscribers", "count"], ["subscribers", "forget", "a@example.com", "--yes"]):
        refused = CliRunner().invoke(app, command, catch_exceptions=False)
        assert refused.exit_code == 1 and "does not exist; run `newsletter db upgrade`" in refused.output
    assert list(tmp_path.iterdir()) == []


def test_forget_says_what_it_erased_and_what_it_cannot_reach(cli, db_url: str) -> None:
    cli("subscribers", "add", "ann@example.com", "--name", "Ann")
    cli("subscribers", "add", "bob@example.com")
    done = cli("subscribers", "forget", " Ann@Example.com ", "bob@example.com", "nobody@example.com", "--yes")
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert lines[0] == "erased Ann@Example.com; only a hash remains, which keeps it suppressed (forgotten)"
    assert lines[1].startswith("erased bob@example.com")
    assert lines[2] == "nobody@example.com was not a subscriber; its hash is now suppressed (forgotten)"
    assert "still hold the erased data until they are rotated" in lines[3]
    assert ("pg_wal" in lines[3]) == db_url.startswith("postgresql")
    assert cli("subscribers", "count", "--status", "active").output.strip() == "0"
    assert "suppressed" in cli("subscribers", "show", "nobody@example.com").output


def test_a_filtered_count_counts_who_would_receive_the_issue(cli, db_url: str) -> None:
    """With --tag or --segment and no --status: active and not suppressed, as a send snapshots."""
    for email, extra in (
        ("ann@example.com", ()),
        ("bob@example.com", ("--pending",)),
        ("cat@example.com", ()),
        ("dan@example.com", ()),
        ("eve@example.com", ()),
    ):
        assert cli("subscribers", "add", email, "--tag", "press", *extra).exit_code == 0
    assert cli("subscribers", "remove", "cat@example.com").exit_code == 0
    engine = make_engine(db_url)
    try:  # an address suppressed while its row stays active (a complaint from another path)
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO suppressions (address_hash, reason) VALUES (:h, 'complained')"),
                {"h": address_hash("dan@example.com")},
            )
        with engine.connect() as conn:
            would_send = Ledger(conn).audience_count("tag:press")
    finally:
        engine.dispose()
    for filters in (("--segment", "tag:press"), ("--tag", "press"), ("--segment", "not tag:staff")):
        counted = cli("subscribers", "count", *filters)
        assert counted.exit_code == 0, counted.output
        assert counted.output.strip() == "2", filters  # Ann and Eve
    assert would_send == 2  # the ledger's snapshot agrees: one rule for both
    assert (
        cli("subscribers", "count", "--segment", "tag:press", "--status", "unsubscribed").output.strip()
        == "1"
    )
    assert cli("subscribers", "count", "--segment", "tag:press", "--status", "active").output.strip() == "3"
    assert cli("subscribers", "count", "--tag", "staff").output.strip() == "0"


def test_a_piped_list_is_tab_separated_and_nothing_is_cut_short(cli) -> None:
    long_address = "a-very-long-local-part-that-a-terminal-table-would-cut@" + "sub." * 12 + "example.com"
    name = 'Zoë "Z" Tab\there'
    assert cli("subscribers", "add", long_address, "--name", name, "--tag", "press").exit_code == 0
    assert cli("subscribers", "add", "bob@example.com").exit_code == 0
    listed = cli("subscribers", "list")  # CliRunner's stdout is not a terminal, as in a pipe
    assert listed.exit_code == 0, listed.output
    rows = list(csv.reader(io.StringIO(listed.stdout), dialect="excel-tab"))
    assert rows[0] == ["email", "name", "status", "tags", "created"]
    assert rows[1][:4] == [long_address, name, "active", "press"]
    assert rows[2][:4] == ["bob@example.com", "", "active", ""]
    assert len(rows) == 3


def test_show_labels_the_leaving_time_with_the_way_the_subscriber_left(cli, db_url: str) -> None:
    from sqlalchemy.orm import Session

    from newsletter.store.statuses import SubscriberStatus
    from newsletter.store.subscribers import SubscriberRepository

    assert cli("subscribers", "add", "ann@example.com").exit_code == 0
    assert cli("subscribers", "add", "bob@example.com").exit_code == 0
    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            SubscriberRepository(session).leave("ann@example.com", SubscriberStatus.BOUNCED)
            session.commit()
    finally:
        engine.dispose()
    labels = [line.split()[0] for line in cli("subscribers", "show", "ann@example.com").output.splitlines()]
    assert "bounced" in labels and "unsubscribed" not in labels, labels
    still_here = cli("subscribers", "show", "bob@example.com").output.splitlines()
    assert [line.split()[0] for line in still_here if line.strip()].count("unsubscribed") == 1
