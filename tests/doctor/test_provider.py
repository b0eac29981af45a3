"""The provider account and webhooks, read through each adapter from the fake ESP's read-only calls."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from newsletter.config import EspSettings, NewsletterSettings, Settings, WebhooksSettings
from newsletter.devtools.fake_esp import FakeESP
from newsletter.devtools.fake_esp.account import FakeAccount
from newsletter.devtools.fake_esp.app import RunningFakeESP, running
from newsletter.doctor.model import Check, Status
from newsletter.doctor.provider import check_account, check_webhooks, list_duration

TOKEN = "doctor-token"
BASE = "https://news.example.org"
#: Each HTTP provider's settings and the environment that makes its adapter.
PROVIDERS = {
    "postmark": (
        {},
        {"POSTMARK_TOKEN": TOKEN, "POSTMARK_WEBHOOK_USER": "u", "POSTMARK_WEBHOOK_PASSWORD": "p"},
    ),
    "sendgrid": ({}, {"SENDGRID_API_KEY": TOKEN, "SENDGRID_WEBHOOK_PUBLIC_KEY": "k"}),
    "mailgun": ({"domain": "mg.example.org"}, {"MAILGUN_API_KEY": TOKEN, "MAILGUN_WEBHOOK_SIGNING_KEY": "k"}),
    "ses": (
        {"region": "eu-west-1", "configuration_set": "newsletter"},
        {"AWS_ACCESS_KEY_ID": TOKEN, "AWS_SECRET_ACCESS_KEY": "secret"},
    ),
}
TOPIC = "arn:aws:sns:eu-west-1:123456789012:newsletter-events"


@pytest.fixture(scope="module")
def fake() -> Iterator[RunningFakeESP]:
    with running(FakeESP(token=TOKEN)) as server:
        yield server


@pytest.fixture(params=sorted(PROVIDERS))
def provider(request: pytest.FixtureRequest, fake: RunningFakeESP) -> str:
    fake.esp.account = FakeAccount(webhook_url=f"{BASE}/webhooks/{request.param}")
    fake.esp.reset()
    return str(request.param)


def setup(provider: str, fake: RunningFakeESP, **env_changes: str) -> tuple[Settings, dict[str, str]]:
    options, environ = PROVIDERS[provider]
    settings = Settings(
        newsletter=NewsletterSettings(from_address="news@example.org", base_url=BASE),
        esp=EspSettings(provider=provider, base_url=fake.url, **options),
        webhooks=WebhooksSettings(ses_topic_arns=(TOPIC,)),
    )
    return settings, {**environ, **env_changes}


def named(checks: list[Check]) -> dict[str, list[Check]]:
    found: dict[str, list[Check]] = {}
    for check in checks:
        found.setdefault(check.name, []).append(check)
    return found


def test_a_healthy_account_and_its_webhook(provider: str, fake: RunningFakeESP) -> None:
    settings, environ = setup(provider, fake)
    checks, account = check_account(settings, environ, audience=20_000)
    assert account is not None and all(c.status is Status.OK for c in checks), checks
    webhooks = check_webhooks(settings, environ, account)
    statuses = {c.name: c.status for c in webhooks}
    if provider == "ses":  # SES lists no webhooks: SNS carries its events
        assert statuses == {"secret": Status.OK, "registered": Status.WARN}
    else:
        assert statuses == {"secret": Status.OK, "registered": Status.OK}, webhooks
    if provider in ("sendgrid", "ses"):
        assert account.dkim_hosts == ("s1._domainkey.example.org", "s2._domainkey.example.org")
        assert account.return_path_domain in ("bounces.example.org",)
    if provider == "mailgun":
        assert account.return_path_domain == "mg.example.org"
        assert "s1._domainkey.mg.example.org" in account.dkim_hosts


def test_a_refused_token_is_one_failing_line(provider: str, fake: RunningFakeESP) -> None:
    settings, environ = setup(provider, fake)
    environ = {key: ("wrong" if value == TOKEN else value) for key, value in environ.items()}
    checks, account = check_account(settings, environ, audience=10)
    assert account is None and len(checks) == 1
    assert checks[0].status is Status.FAIL and "refused our credentials" in checks[0].found and checks[0].fix


def test_a_missing_token_is_one_failing_line_naming_the_variable(provider: str, fake: RunningFakeESP) -> None:
    settings, environ = setup(provider, fake)
    environ = {key: value for key, value in environ.items() if value != TOKEN}
    checks, account = check_account(settings, environ, audience=10)
    assert account is None and [c.status for c in checks] == [Status.FAIL]
    assert "_KEY" in checks[0].found or "TOKEN" in checks[0].found or "AWS_ACCESS_KEY_ID" in checks[0].found


def test_an_unreachable_provider_is_one_failing_line(provider: str, fake: RunningFakeESP) -> None:
    settings, environ = setup(provider, fake)
    settings = settings.model_copy(
        update={"esp": settings.esp.model_copy(update={"base_url": "http://127.0.0.1:9"})}
    )
    checks, account = check_account(settings, environ, audience=10)
    assert account is None and [c.status for c in checks] == [Status.FAIL]
    assert "could not read the account" in checks[0].found


def test_a_sandbox_or_unverified_account_fails(provider: str, fake: RunningFakeESP) -> None:
    fake.esp.account.sandbox = True
    fake.esp.account.verified = provider == "postmark"  # Postmark has only the sandbox switch
    settings, environ = setup(provider, fake)
    checks, _ = check_account(settings, environ, audience=10)
    assert any(c.status is Status.FAIL for c in checks), checks


@pytest.mark.parametrize("case", ["none", "elsewhere", "bounces only"])
def test_a_webhook_missing_or_incomplete_fails(provider: str, fake: RunningFakeESP, case: str) -> None:
    account = fake.esp.account
    if case == "none":
        account.webhook_url = ""
    elif case == "elsewhere":
        account.webhook_url = "https://old.example.org/hooks"
    else:
        account.webhook_kinds = ("bounce",)
    settings, environ = setup(provider, fake)
    _, read = check_account(settings, environ, audience=10)
    registered = named(check_webhooks(settings, environ, read))["registered"][0]
    if provider == "ses":  # SNS carries SES's events; the SES API lists no subscriptions to judge
        assert registered.status is Status.WARN
        return
    assert registered.status is Status.FAIL and registered.fix
    if case == "bounces only":
        assert "complaint" in registered.found


def test_postmark_s_webhook_url_with_credentials_matches(fake: RunningFakeESP) -> None:
    fake.esp.account = FakeAccount(webhook_url="https://user:pass@news.example.org/webhooks/postmark/")
    settings, environ = setup("postmark", fake)
    _, account = check_account(settings, environ, audience=10)
    assert named(check_webhooks(settings, environ, account))["registered"][0].status is Status.OK


def test_missing_webhook_secrets_fail(provider: str, fake: RunningFakeESP) -> None:
    settings, environ = setup(provider, fake)
    environ = {key: value for key, value in environ.items() if "WEBHOOK" not in key}
    if provider == "ses":
        settings = settings.model_copy(update={"webhooks": WebhooksSettings()})
    secret = named(check_webhooks(settings, environ, None))["secret"][0]
    assert secret.status is Status.FAIL and ("not set" in secret.found or "ses_topic_arns" in secret.found)


def test_sendgrid_without_the_read_scopes_warns_instead_of_guessing(fake: RunningFakeESP) -> None:
    fake.esp.account = FakeAccount(scopes=("mail.send",))
    settings, environ = setup("sendgrid", fake)
    checks, account = check_account(settings, environ, audience=10)
    assert account is not None and account.webhooks is None
    assert [c.status for c in checks] == [Status.OK, Status.WARN]
    assert named(check_webhooks(settings, environ, account))["registered"][0].status is Status.WARN


def test_ses_rate_and_quota_against_the_list(fake: RunningFakeESP) -> None:
    fake.esp.account = FakeAccount(max_send_rate=14, max_24_hour_send=50_000, sent_last_24_hours=45_000)
    settings, environ = setup("ses", fake)
    checks = named(check_account(settings, environ, audience=12_000)[0])
    assert checks["sending rate"][0].found == "14 messages/s: the list of 12,000 takes 14 min 17 s"
    assert (
        checks["daily quota"][0].status is Status.FAIL
        and "5,000 messages left" in checks["daily quota"][0].found
    )


def test_ses_without_a_configuration_set_hears_nothing(fake: RunningFakeESP) -> None:
    settings, environ = setup("ses", fake)
    settings = settings.model_copy(update={"esp": settings.esp.model_copy(update={"configuration_set": ""})})
    registered = named(check_webhooks(settings, environ, None))["registered"][0]
    assert registered.status is Status.FAIL and "configuration_set" in registered.found


def test_list_duration() -> None:
    assert [list_duration(n, 10) for n in (5, 600, 100_000)] == ["0 s", "1 min 0 s", "2 h 46 min"]
