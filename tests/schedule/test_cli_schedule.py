"""``newsletter schedule`` through Typer: both forms (ISSUE --at, and the subcommands), the times
it prints, and bad input refused with exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import time_machine
from typer.testing import CliRunner

from newsletter.cli import app
from tests.conftest import FIXTURE_ISSUES_DIR
from tests.schedule.conftest import make_it_fail_check, utc

ISSUE = "issues/2026-11-27.yaml"
NOW = utc(2026, 11, 20, 12)


@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", db_url)
    monkeypatch.setenv("NEWSLETTER_ESP_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "issues").mkdir()
    shutil.copy(FIXTURE_ISSUES_DIR / "2026-11-27.yaml", tmp_path / ISSUE)
    runner = CliRunner()

    def invoke(*args: str):
        with time_machine.travel(NOW, tick=False):
            return runner.invoke(app, list(args), catch_exceptions=False)

    assert invoke("subscribers", "add", "reader@example.org").exit_code == 0
    return invoke


def test_schedule_an_issue_then_list_move_and_cancel_it(cli) -> None:
    done = cli("schedule", ISSUE, "--at", "2026-11-27 09:00")
    assert done.exit_code == 0, done.output
    assert "2026-11-27 09:00 EST (2026-11-27 14:00 UTC)" in done.output
    listed = cli("schedule", "list")
    assert listed.exit_code == 0 and "2026-11-27 09:00 EST" in listed.output and ISSUE in listed.output
    moved = cli("schedule", "move", ISSUE, "--at", "2026-11-27 16:00", "--tz", "Europe/Berlin")
    assert moved.exit_code == 0 and "2026-11-27 16:00 CET (2026-11-27 15:00 UTC)" in moved.output
    data = json.loads(cli("schedule", "list", "--json").output)
    assert data["sends"][0]["scheduled_at"] == "2026-11-27T15:00:00+00:00"
    status = cli("status")
    assert "scheduled" in status.output and "2026-11-27 15:00 UTC" in status.output
    assert cli("schedule", "cancel", "2026-11-27").exit_code == 0
    assert "nothing scheduled" in cli("schedule", "list").output
    assert "cancelled" in cli("status").output


def test_options_may_come_before_the_issue(cli) -> None:
    done = cli("schedule", "--at", "2026-11-27 09:00", "--tz", "UTC", ISSUE)
    assert done.exit_code == 0, done.output
    assert "for 2026-11-27 09:00 UTC" in done.output
    assert "2026-11-27 04:00 EST" in cli("schedule", "list").output


def test_weekly_rule_on_and_off(cli) -> None:
    done = cli("schedule", "weekly", "--day", "fri", "--time", "09:00")
    assert done.exit_code == 0 and "every friday at 09:00 America/New_York" in done.output
    again = cli("schedule", "weekly", "--day", "thursday", "--time", "07:30")  # replaces it
    assert again.exit_code == 0
    listed = cli("schedule", "list")
    assert "every thursday at 07:30" in listed.output and "friday" not in listed.output
    assert cli("schedule", "weekly", "--off").exit_code == 0
    assert "nothing scheduled" in cli("schedule", "list").output
    assert cli("schedule", "weekly", "--off").exit_code == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("schedule", ISSUE), "--at"),
        (("schedule", ISSUE, "--at", "2026-11-19 09:00"), "in the past"),
        (("schedule", ISSUE, "--at", "2026-03-08 02:30"), "does not exist"),
        (("schedule", ISSUE, "--at", "2026-11-01 01:30"), "happens twice"),
        (("schedule", ISSUE, "--at", "friday"), "YYYY-MM-DD HH:MM"),
        (("schedule", ISSUE, "--at", "2026-11-27 09:00", "--tz", "Nowhere/Town"), "unknown time zone"),
        (("schedule", ISSUE, "--at", "2026-11-27 09:00", "--segment", "tag:("), "segment"),
        (("schedule", "issues/missing.yaml", "--at", "2026-11-27 09:00"), "no such file"),
        (("schedule", ISSUE, "other.yaml", "--at", "2026-11-27 09:00"), "unexpected argument"),
        (("schedule", "cancel", ISSUE), "no send"),
        (("schedule", "move", ISSUE, "--at", "2026-11-28 09:00"), "no send"),
        (("schedule", "weekly", "--day", "someday", "--time", "09:00"), "weekday"),
        (("schedule", "weekly", "--day", "fri", "--time", "9 o'clock"), "HH:MM"),
        (("schedule", "weekly", "--day", "fri"), "--time"),
    ],
)
def test_bad_input_is_refused_with_exit_2(cli, args: tuple[str, ...], message: str) -> None:
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "nothing scheduled" in cli("schedule", "list").output


def test_an_issue_that_fails_check_is_not_scheduled(cli, tmp_path: Path) -> None:
    make_it_fail_check(tmp_path / ISSUE)
    result = cli("schedule", ISSUE, "--at", "2026-11-27 09:00")
    assert result.exit_code == 2 and "fails check" in result.output
    assert "nothing scheduled" in cli("schedule", "list").output


def test_bare_schedule_shows_help_and_subcommands_are_not_issues(cli, tmp_path: Path) -> None:
    bare = cli("schedule")
    assert bare.exit_code == 2 and "list" in bare.output and "weekly" in bare.output
    (tmp_path / "list").write_text("not an issue")  # a file named like a subcommand
    assert cli("schedule", "list").exit_code == 0


def test_worker_once_sends_what_came_due_while_it_was_down(cli, tmp_path: Path) -> None:
    assert cli("schedule", ISSUE, "--at", "2026-11-20 12:30").exit_code == 0
    with time_machine.travel(utc(2026, 11, 20, 18), tick=False):  # 13:00 in New York: 30 min late
        result = CliRunner().invoke(app, ["worker", "--once"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "started, 1 recipient" in result.output and "finished: 1 accepted" in result.output
    assert len(list((tmp_path / "outbox").glob("*/*.eml"))) == 1


def test_worker_once_marks_a_send_missed_past_the_grace_time(cli, tmp_path: Path) -> None:
    assert cli("schedule", ISSUE, "--at", "2026-11-20 12:30").exit_code == 0
    with time_machine.travel(utc(2026, 11, 21, 18), tick=False):  # a day late
        result = CliRunner().invoke(app, ["worker", "--once"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "missed" in result.output
    status = cli("status")
    assert "missed" in status.output and "while no worker ran" in status.output
    assert not (tmp_path / "outbox").exists() or not list((tmp_path / "outbox").glob("*/*.eml"))


@pytest.mark.parametrize("ended", ["cancelled", "missed"])
def test_send_sends_now_a_scheduled_send_that_never_went_out(cli, tmp_path: Path, ended: str) -> None:
    assert cli("schedule", ISSUE, "--at", "2026-11-20 12:30").exit_code == 0
    refused = cli("send", ISSUE, "--yes")
    assert refused.exit_code == 2 and "is scheduled" in refused.output
    if ended == "cancelled":
        assert cli("schedule", "cancel", ISSUE).exit_code == 0
    else:
        with time_machine.travel(utc(2026, 11, 22), tick=False):
            assert CliRunner().invoke(app, ["worker", "--once"], catch_exceptions=False).exit_code == 0
    sent = cli("send", ISSUE, "--yes")
    assert sent.exit_code == 0, sent.output
    assert "is finished: 1 accepted" in sent.output
    again = cli("send", ISSUE, "--yes")
    assert again.exit_code == 0 and "Nothing to send." in again.output
    assert len(list((tmp_path / "outbox").glob("*/*.eml"))) == 1
