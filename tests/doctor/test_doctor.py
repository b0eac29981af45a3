"""``newsletter doctor`` whole: a set-up that is sound passes; each broken part is one ✘ line and
exit 1. On SQLite and PostgreSQL, against the real app on loopback, the fake ESP and a local DNS
server: nothing leaves the machine."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.routing import Route
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.config import Settings
from newsletter.delivery import runner
from newsletter.devtools.fake_esp import FakeESP
from newsletter.devtools.fake_esp.account import FakeAccount
from newsletter.devtools.fake_esp.app import RunningFakeESP, running
from newsletter.doctor.model import Report, Status
from newsletter.doctor.run import run_doctor
from newsletter.events.model import ProviderEvent
from newsletter.store.db import make_engine, session_scope, writing
from newsletter.store.events import record_events
from newsletter.store.heartbeats import beat
from newsletter.store.ledger import ledger_for
from newsletter.store.models import Delivery, EventKind, utcnow
from newsletter.store.subscribers import SubscriberRepository
from newsletter.web.app import create_app
from tests.conftest import FIXTURE_ISSUES_DIR
from tests.dns_server import Zones
from tests.doctor.keys import rsa_record
from tests.loopback import serve

TOKEN = "doctor-token"
SECRET = "s" * 40
ZONE = {
    "example.org": ["v=spf1 include:sendgrid.net -all"],
    "sendgrid.net": ["v=spf1 ip4:167.89.0.0/17 -all"],
    "em1.example.org": ["v=spf1 include:sendgrid.net -all"],  # SendGrid's return path (a CNAME in life)
    "_dmarc.example.org": ["v=DMARC1; p=reject; rua=mailto:dmarc@example.org"],
    "s1._domainkey.example.org": [rsa_record()],
    "s2._domainkey.example.org": [rsa_record()],
}
READERS = [f"reader{n}@example.net" for n in range(20)]


@dataclass
class Setup:
    settings: Settings
    environ: dict[str, str]
    engine: Engine
    send_id: int
    zones: Zones
    fake: RunningFakeESP
    config: Path

    def run(self) -> Report:
        return run_doctor(self.settings, self.environ)

    def changed(self, **sections: dict[str, object]) -> Setup:
        data = self.settings.model_dump(mode="json", exclude={"source"})
        for section, values in sections.items():
            data[section] = {**data[section], **values}
        self.settings = Settings.model_validate(data)
        return self


def statuses(report: Report) -> dict[str, Status]:
    return {f"{c.section}: {c.name}": c.status for c in report.checks}


@pytest.fixture(scope="module")
def fake() -> Iterator[RunningFakeESP]:
    with running(FakeESP(token=TOKEN)) as server:
        yield server


@pytest.fixture
def setup(
    db_url: str, tmp_path: Path, dns: tuple[str, Zones], fake: RunningFakeESP, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Setup]:
    """A list of 20 that got one issue through the outbox; the app serving it on loopback; the
    provider switched to SendGrid (the fake) for the doctor, with DNS and the account in order."""
    address, zones = dns
    zones.records.update(ZONE)
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)  # the send's and the app's key
    engine = make_engine(db_url)
    with session_scope(engine) as session:
        repo = SubscriberRepository(session)
        for reader in READERS:
            repo.add(reader)
    environ = {"NEWSLETTER_SECRET_KEY": SECRET, "SENDGRID_API_KEY": TOKEN, "SENDGRID_WEBHOOK_PUBLIC_KEY": "k"}
    base = Settings.model_validate(
        {
            "newsletter": {"from_address": "news@example.org"},
            "database": {"url": db_url},
            "esp": {"outbox_dir": str(tmp_path / "outbox")},
            "doctor": {"nameservers": [address], "timeout": 2},
        }
    )
    prepared = runner.prepare_issue(FIXTURE_ISSUES_DIR / "2026-11-13.yaml", base)
    outcome = runner.execute(runner.plan(prepared, base, "", start=True), base)
    assert outcome.exit_code == 0
    with serve(create_app(base, engine)) as url:
        fake.esp.account = FakeAccount(webhook_url=f"{url}/webhooks/sendgrid", return_path="")
        data = base.model_dump(mode="json", exclude={"source"})
        data["newsletter"]["base_url"] = url
        data["esp"] |= {"provider": "sendgrid", "base_url": fake.url}
        settings = Settings.model_validate(data)
        config = tmp_path / "newsletter.toml"
        yield Setup(settings, environ, engine, outcome.send.id, zones, fake, config)
    engine.dispose()


def test_a_sound_set_up_has_no_failing_line(setup: Setup) -> None:
    report = setup.run()
    found = statuses(report)
    assert not report.failed, [c for c in report.checks if c.status is Status.FAIL]
    assert report.exit_code == 0
    # plain http on loopback is the one warning of this set-up
    assert [name for name, status in found.items() if status is Status.WARN] == [
        "The subscriber links: base_url"
    ]
    for name in (
        "DNS of the From domain: DMARC alignment",
        "The provider account: sendgrid account",
        "The subscriber links: healthz",
        "The subscriber links: one-click unsubscribe",
        "The subscriber links: View in browser",
        "Webhooks: registered",
        "The service: database",
        "The service: secret key",
        "The service: worker",
        "The list's health: complaints",
        "The list's health: hard bounces",
    ):
        assert found[name] is Status.OK, name
    # the probe unsubscribed nobody
    with setup.engine.connect() as conn:
        assert ledger_for(conn).audience_count("") == len(READERS)


def test_each_broken_part_fails_its_line(setup: Setup) -> None:
    del setup.zones.records["_dmarc.example.org"]
    setup.fake.esp.account.webhook_url = ""
    setup.environ["NEWSLETTER_SECRET_KEY"] = "short-but-16-chars"
    found = statuses(setup.run())
    failing = {name for name, status in found.items() if status is Status.FAIL}
    assert failing == {
        "DNS of the From domain: DMARC",
        "Webhooks: registered",
        "The service: secret key",
        "The subscriber links: one-click unsubscribe",  # the app signs with the old key: the token is refused
    }


def test_the_list_s_health_judges_complaints_and_hard_bounces(setup: Setup) -> None:
    with setup.engine.connect() as conn:
        deliveries = (
            conn.execute(select(Delivery.id).where(Delivery.send_id == setup.send_id)).scalars().all()
        )
    now = utcnow()
    events = [
        ProviderEvent(
            "sendgrid", "c1", EventKind.COMPLAINED, now, delivery_id=deliveries[0], send_id=setup.send_id
        ),
        ProviderEvent(
            "sendgrid", "b1", EventKind.BOUNCED_HARD, now, delivery_id=deliveries[1], send_id=setup.send_id
        ),
    ]
    with writing(setup.engine).begin() as conn:
        record_events(conn, events)
    found = {c.name: c for c in setup.run().checks if c.section == "The list's health"}
    assert found["complaints"].status is Status.FAIL and found["complaints"].found.startswith(
        "5.00%: 1 of 20"
    )
    assert found["hard bounces"].status is Status.FAIL and found["complaints"].fix


def test_a_scheduled_send_needs_a_live_worker_and_a_good_issue(setup: Setup, tmp_path: Path) -> None:
    issue = tmp_path / "2026-11-20.yaml"
    issue.write_text((FIXTURE_ISSUES_DIR / "2026-11-13.yaml").read_text().replace("2026-11-13", "2026-11-20"))
    with writing(setup.engine).begin() as conn:
        ledger_for(conn).create_scheduled(
            issue_file=str(issue),
            issue_date=dt.date(2026, 11, 20),
            segment="",
            subject="Next week",
            content_hash="h" * 64,
            provider="sendgrid",
            scheduled_at=utcnow() + dt.timedelta(days=3),
        )
    found = {c.name: c for c in setup.run().checks if c.section == "The service"}
    assert found["worker"].status is Status.FAIL and "1 scheduled send" in found["worker"].found
    assert found["next scheduled issue"].status is Status.OK
    with writing(setup.engine).begin() as conn:
        beat(conn, "host:1", started_at=utcnow())
    issue.write_text(issue.read_text().replace("subject:", "subject_typo:", 1))
    found = {c.name: c for c in setup.run().checks if c.section == "The service"}
    assert found["worker"].status is Status.OK and "host:1" in found["worker"].found
    assert (
        found["next scheduled issue"].status is Status.FAIL
        and "subject" in found["next scheduled issue"].found
    )


def test_a_redirecting_one_click_and_a_missing_archive_page_fail(setup: Setup) -> None:
    async def health(request):  # type: ignore[no-untyped-def]
        return PlainTextResponse("ok")

    async def elsewhere(request):  # type: ignore[no-untyped-def]
        return RedirectResponse("https://www.example.org" + request.url.path, status_code=301)

    proxy = Starlette(
        routes=[Route("/healthz", health), Route("/{path:path}", elsewhere, methods=["GET", "POST"])]
    )
    with serve(proxy) as url:
        setup.changed(newsletter={"base_url": url})
        found = {c.name: c for c in setup.run().checks if c.section == "The subscriber links"}
    one_click = found["one-click unsubscribe"]
    assert one_click.status is Status.FAIL and "redirect" in one_click.found and "GET" in one_click.found
    assert found["View in browser"].status is Status.FAIL


def test_nothing_listening_at_base_url_is_one_line(setup: Setup) -> None:
    setup.changed(newsletter={"base_url": "http://127.0.0.1:9"})
    found = [c for c in setup.run().checks if c.section == "The subscriber links"]
    assert [(c.name, c.status) for c in found] == [("base_url", Status.WARN), ("healthz", Status.FAIL)]


def test_a_plain_http_base_url_on_a_public_host_fails(setup: Setup) -> None:
    setup.changed(newsletter={"base_url": "http://news.example.org"})
    found = {c.name: c for c in setup.run().checks if c.section == "The subscriber links"}
    assert found["base_url"].status is Status.FAIL and "https" in found["base_url"].found


def test_an_unmigrated_or_missing_database(tmp_path: Path, empty_db_url: str) -> None:
    report = run_doctor(Settings.model_validate({"database": {"url": empty_db_url}}), {})
    database = next(c for c in report.checks if c.name == "database")
    assert database.status is Status.FAIL and "newsletter db upgrade" in database.fix
    missing = tmp_path / "nowhere" / "n.db"
    report = run_doctor(Settings.model_validate({"database": {"url": f"sqlite:///{missing}"}}), {})
    assert "does not exist" in next(c for c in report.checks if c.name == "database").found
    assert not missing.exists()  # the doctor only looks


def test_the_cli_prints_lines_or_json_and_exits_1_on_a_failure(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = setup.settings
    setup.config.write_text(
        f"""
[newsletter]
from_address = "news@example.org"
base_url = "{settings.newsletter.base_url}"
[database]
url = "{settings.database.url}"
[esp]
provider = "sendgrid"
base_url = "{settings.esp.base_url}"
[doctor]
nameservers = {json.dumps(list(settings.doctor.nameservers))}
timeout = 2
"""
    )
    for name, value in setup.environ.items():
        monkeypatch.setenv(name, value)
    cli = CliRunner()
    result = cli.invoke(app, ["doctor", "--config", str(setup.config), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] is True and data["counts"]["fail"] == 0
    assert {"section", "name", "status", "found", "fix"} == set(data["checks"][0])
    setup.zones.records["em1.example.org"] = ["v=spf1 +all"]
    result = cli.invoke(app, ["doctor", "--config", str(setup.config)])
    assert result.exit_code == 1
    assert "✘ SPF (em1.example.org): the record ends in +all" in result.output
    assert "fix:" in result.output and "failing" in result.output.splitlines()[-1]

