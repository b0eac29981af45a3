"""``send``, ``status`` and ``worker`` end to end through Typer, on the outbox, on both databases."""

from __future__ import annotations

import email
import email.policy
import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.store.db import make_engine
from newsletter.store.models import BatchMessageIds, Claim, Delivery, Send
from tests.conftest import FIXTURE_ISSUES_DIR

ISSUE = "2026-11-20.yaml"


@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", db_url)
    monkeypatch.setenv("NEWSLETTER_ESP_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "issues").mkdir()
    shutil.copy(FIXTURE_ISSUES_DIR / ISSUE, tmp_path / "issues" / ISSUE)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(app, list(args), input=input, catch_exceptions=False)

    for i in range(3):
        assert (
            invoke("subscribers", "add", f"reader{i}@example.org", "--name", f"Reader {i}").exit_code == 0
        )
    invoke("subscribers", "add", "gone@example.org")
    invoke("subscribers", "remove", "gone@example.org")
    return invoke


def _rows(db_url: str) -> tuple[int, int]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            sends = conn.execute(select(func.count()).select_from(Send)).scalar_one()
            deliveries = conn.execute(select(func.count()).select_from(Delivery)).scalar_one()
    finally:
        engine.dispose()
    return sends, deliveries


def test_dry_run_says_what_would_happen_and_writes_nothing(cli, db_url: str, tmp_path: Path) -> None:
    result = cli("send", f"issues/{ISSUE}", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Recipients: 3" in result.output and "Provider: outbox" in result.output
    assert _rows(db_url) == (0, 0) and not (tmp_path / "outbox").exists()


def test_send_asks_then_delivers_each_active_subscriber_once(cli, db_url: str, tmp_path: Path) -> None:
    declined = cli("send", f"issues/{ISSUE}", input="n\n")
    assert declined.exit_code == 1 and _rows(db_url) == (0, 0)
    sent = cli("send", f"issues/{ISSUE}", input="y\n")
    assert sent.exit_code == 0, sent.output
    assert "is finished: 3 accepted" in sent.output
    files = sorted((tmp_path / "outbox").glob("*/*.eml"))
    assert len(files) == 3
    recipients = set()
    for path in files:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.strict)
        recipients.add(str(message["To"]))
        assert message["List-Unsubscribe"].startswith("<http://127.0.0.1:8000/u/")
    assert recipients == {f"Reader {i} <reader{i}@example.org>" for i in range(3)}
    again = cli("send", f"issues/{ISSUE}", "--yes")
    assert again.exit_code == 0 and "Nothing to send." in again.output
    assert len(list((tmp_path / "outbox").glob("*/*.eml"))) == 3


def test_status_reports_counts_as_text_and_json(cli) -> None:
    cli("send", f"issues/{ISSUE}", "--yes")
    text = cli("status")
    assert text.exit_code == 0 and "finished" in text.output and "3 accepted" in text.output
    data = json.loads(cli("status", f"issues/{ISSUE}", "--json").output)
    assert [d["counts"]["accepted"] for d in data] == [3]
    assert data[0]["state"] == "finished" and data[0]["issue_date"] == "2026-11-20"


def test_an_issue_that_fails_check_is_not_sent(cli, db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "issues" / ISSUE
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("preheader:", "preheader: ''\nx_preheader:", 1), encoding="utf-8")
    result = cli("send", f"issues/{ISSUE}", "--yes")
    assert result.exit_code == 2 and _rows(db_url) == (0, 0)


def test_resume_requires_the_flag_and_the_same_content(cli, db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    cli("send", f"issues/{ISSUE}", "--yes")
    with engine.begin() as conn:  # as if the send had paused with two recipients left
        # what Ctrl-C during the last batch leaves: its claim handed back with a row unsent,
        # the others' answers written to their rows (a claim is closed accepted only when done)
        conn.execute(Send.__table__.update().values(state="paused", error="paused by the editor"))
        conn.execute(Delivery.__table__.update().values(state="accepted"))
        last = select(func.max(Delivery.id)).scalar_subquery()
        conn.execute(Delivery.__table__.update().where(Delivery.id == last).values(state="pending"))
        conn.execute(BatchMessageIds.__table__.delete())  # the claim's ids were never recorded
        conn.execute(Claim.__table__.update().values(state="released", owner=None))
    engine.dispose()
    refused = cli("send", f"issues/{ISSUE}", "--yes")
    assert refused.exit_code == 2 and "--resume" in refused.output
    path = tmp_path / "issues" / ISSUE
    original = path.read_text(encoding="utf-8")
    path.write_text(original.replace("preheader: ", "preheader: Changed. ", 1), encoding="utf-8")
    changed = cli("send", f"issues/{ISSUE}", "--yes", "--resume")
    assert changed.exit_code == 2 and "changed since send" in changed.output
    path.write_text(original, encoding="utf-8")
    resumed = cli("send", f"issues/{ISSUE}", "--yes", "--resume")
    assert resumed.exit_code == 0 and "is finished: 3 accepted" in resumed.output


def test_test_copies_go_outside_the_ledger(cli, db_url: str, tmp_path: Path) -> None:
    result = cli("send", f"issues/{ISSUE}", "--test", "editor@example.org")
    assert result.exit_code == 0 and "editor@example.org: accepted" in result.output
    assert _rows(db_url) == (0, 0)
    (copy,) = (tmp_path / "outbox").glob("*/*.eml")
    assert copy.name == "test-1.eml"  # never "-1.eml", which shell tools read as an option
    message = email.message_from_bytes(copy.read_bytes(), policy=email.policy.strict)
    assert str(message["Subject"]).startswith("[TEST] ") and message["To"] == "editor@example.org"
    bad = cli("send", f"issues/{ISSUE}", "--test", "not-an-address")
    assert bad.exit_code == 2


def test_worker_sends_a_running_send(cli, db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    cli("send", f"issues/{ISSUE}", "--yes")
    with engine.begin() as conn:
        # as if `send` had only snapshotted the audience: nothing claimed yet
        conn.execute(Send.__table__.update().values(state="sending", claimed_through=0))
        conn.execute(Delivery.__table__.update().values(state="pending"))
        conn.execute(BatchMessageIds.__table__.delete())
        conn.execute(Claim.__table__.delete())
    engine.dispose()
    shutil.rmtree(tmp_path / "outbox")
    result = cli("worker", "--once")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "outbox").glob("*/*.eml"))) == 3
    assert "finished" in cli("status").output


def test_a_stopped_segment_send_names_its_segment_and_resume_never_guesses(
    cli, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from newsletter.delivery.esp.base import AuthError
    from newsletter.delivery.esp.outbox import OutboxAdapter

    assert cli("subscribers", "add", "press@example.org", "--tag", "x").exit_code == 0
    assert cli("send", f"issues/{ISSUE}", "--yes").exit_code == 0  # everyone: finished
    with monkeypatch.context() as refused:

        def unauthorised(self: object, message: object, recipients: object) -> list[object]:
            raise AuthError("401 invalid server token")

        refused.setattr(OutboxAdapter, "send_batch", unauthorised)
        stopped = cli("send", f"issues/{ISSUE}", "--segment", "tag:x", "--yes")
    assert stopped.exit_code == 1 and "is stopped" in stopped.output, stopped.output
    hint = f"resume with: newsletter send issues/{ISSUE} --segment tag:x --resume"
    assert hint in stopped.output, stopped.output
    # a bare --resume would have answered about the finished send: it lists both instead
    ambiguous = cli("send", f"issues/{ISSUE}", "--resume", "--yes")
    assert ambiguous.exit_code == 2 and "Nothing to send" not in ambiguous.output
    assert "has 2 sends" in ambiguous.output and "segment 'tag:x': stopped, 1 left" in ambiguous.output
    assert f"newsletter send issues/{ISSUE} --segment '' --resume" in ambiguous.output
    resumed = cli(*hint.removeprefix("resume with: newsletter ").split(), "--yes")
    assert resumed.exit_code == 0 and "is finished: 1 accepted" in resumed.output, resumed.output


def test_the_only_send_of_an_issue_resumes_without_its_segment(cli, db_url: str) -> None:
    cli("subscribers", "add", "press@example.org", "--tag", "x")
    assert cli("send", f"issues/{ISSUE}", "--segment", "tag:x", "--yes").exit_code == 0
    again = cli("send", f"issues/{ISSUE}", "--resume", "--yes")
    assert again.exit_code == 0 and "Audience: segment 'tag:x'" in again.output
    assert again.output.rstrip().endswith("Nothing to send.")


def test_dry_run_counts_the_batches_and_nothing_to_send_comes_last(
    cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_ESP_BATCH_SIZE", "2")
    planned = cli("send", f"issues/{ISSUE}", "--dry-run")
    assert "Provider: outbox, up to 2 per request: 2 batches" in planned.output, planned.output
    cli("send", f"issues/{ISSUE}", "--yes")
    done = cli("send", f"issues/{ISSUE}", "--yes")
    lines = done.output.rstrip().splitlines()
    assert lines[-2].startswith("Provider: outbox") and lines[-1] == "Nothing to send.", lines
