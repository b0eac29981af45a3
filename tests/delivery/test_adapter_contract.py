"""What every HTTP adapter must do, once for all of them (one fixture each: ``providers.py``).

Each recipient is accepted with an id and gets their own values; a refused recipient does not
take the others down; 429 and 5xx are retried (honouring ``Retry-After`` where the provider sends
one); a request that never left is retried and one that may have arrived leaves its recipients
``unknown``; 401/403 stop the send; no batch goes over the provider's limit; the body travels once
where the provider allows. Against the fake ESP on 127.0.0.1 over real HTTP, or, for answers the
fake never gives, a scripted transport. What is the provider's own stays in ``test_<provider>.py``.
"""

from __future__ import annotations

import csv
import hashlib
import html
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from newsletter.delivery.esp.base import Adapter, AuthError, Outcome, Outgoing, Result, RetryableError
from newsletter.devtools.fake_esp import FakeESP, Faults, RunningFakeESP, running
from newsletter.render.slots import fill, html_values
from newsletter.store.db import make_engine
from newsletter.store.importer import import_csv
from newsletter.store.ledger import ledger_for
from newsletter.store.models import DeliveryState
from tests.conftest import FIXTURE_ISSUES_DIR, clean_environment
from tests.delivery.conftest import TOKEN, make_message, make_recipient, make_recipients, read_record
from tests.delivery.providers import KEY, PROVIDERS, Provider


@pytest.fixture(params=PROVIDERS, ids=[p.name for p in PROVIDERS])
def provider(request: pytest.FixtureRequest) -> Provider:
    assert isinstance(request.param, Provider)
    return request.param


@pytest.fixture
def adapter(provider: Provider, fake: RunningFakeESP, message: Outgoing) -> Iterator[Adapter]:
    """The provider's adapter against the fake, prepared for ``message`` (as the engine does)."""
    adapter = provider.make(TOKEN, fake.url, 2.0)
    adapter.prepare(message)
    yield adapter
    adapter.close()


def accepted(results: list[Result]) -> bool:
    return all(r.outcome is Outcome.ACCEPTED for r in results)


# -- accepted: an id and their own values for each recipient ------------------------------------


def test_each_recipient_is_accepted_with_an_id_and_gets_their_own_values(
    provider: Provider, adapter: Adapter, fake: RunningFakeESP, message: Outgoing, record_path: Path
) -> None:
    recipients = make_recipients(5)
    results = {r.delivery_id: r for r in adapter.send_batch(message, recipients)}
    assert len(results) == 5 and accepted(list(results.values()))
    assert all(r.message_id for r in results.values())
    adapter.finish(message)
    assert fake.esp.templates == {} and fake.esp.ses_templates == {}  # nothing left at the provider

    record = {entry["recipient"]: entry for entry in read_record(record_path)}
    assert len(record) == 5
    for index, recipient in enumerate(recipients):
        entry = record[recipient.email]
        result_id = results[recipient.delivery_id].message_id
        assert entry["message_id"] == (f"{result_id}.{index}" if provider.shared_id else result_id)
        expected_html = fill(message.html, html_values(recipient.values))
        assert entry["html"] == expected_html
        assert entry["html_sha256"] == hashlib.sha256(expected_html.encode()).hexdigest()
        assert entry["text"] == fill(message.text, recipient.values)
        assert entry["subject"] == message.subject
        assert entry[provider.ids_field] == {"send_id": "7", "delivery_id": str(recipient.delivery_id)}
        assert entry["headers"] == provider.headers(message, recipient)
        assert f"Hello {html.escape(recipient.name)}," in entry["html"]
        assert f"Hello {recipient.name}," in entry["text"]
        assert "{{not a tag}}" in entry["html"] and "{{{raw}}}" in entry["html"]
    ids = [r.message_id for r in results.values()]
    assert len(set(ids)) == (1 if provider.shared_id else 5)
    markup = record["reader0@example.com"]
    assert "<b>Ana</b>" in markup["text"] and "<b>Ana</b>" not in markup["html"]
    assert "&lt;b&gt;Ana&lt;/b&gt; &amp; &quot;Bo&quot;" in markup["html"]


def test_slots_in_the_subject_get_the_raw_value(
    provider: Provider, fake: RunningFakeESP, record_path: Path
) -> None:
    message = make_message(subject="For %%name%% only")
    adapter = provider.make(TOKEN, fake.url, 2.0)
    try:
        adapter.prepare(message)
        assert accepted(adapter.send_batch(message, [make_recipient(0)]))
    finally:
        adapter.close()
    assert read_record(record_path)[0]["subject"] == 'For <b>Ana</b> & "Bo" only'


# -- per-recipient refusals ---------------------------------------------------------------------


def test_a_refused_recipient_does_not_take_the_others_down(
    provider: Provider, adapter: Adapter, fake: RunningFakeESP, message: Outgoing, record_path: Path
) -> None:
    recipients = provider.refusal(fake.esp)
    results = {r.delivery_id: r for r in adapter.send_batch(message, recipients)}
    outcomes = tuple(results[r.delivery_id].outcome for r in recipients)
    assert outcomes == provider.refused
    refused = results[recipients[1].delivery_id]
    assert provider.refused_error in (refused.error or "") and refused.message_id is None
    took = [r.email for r in recipients if results[r.delivery_id].outcome is Outcome.ACCEPTED]
    assert sorted(e["recipient"] for e in read_record(record_path)) == took
    waiting = [r for r in recipients if results[r.delivery_id].outcome is Outcome.RETRY]
    if waiting:
        assert accepted(adapter.send_batch(message, waiting))


def test_a_refused_request_fails_every_recipient_with_the_providers_message(
    provider: Provider, message: Outgoing
) -> None:
    assert provider.refused_requests
    for response, error in provider.refused_requests:
        adapter = provider.scripted(lambda request, response=response: response)  # type: ignore[misc]
        results = adapter.send_batch(message, make_recipients(3))
        assert [r.outcome for r in results] == [Outcome.FAILED] * 3
        assert results[0].error == error
        adapter.close()


# -- whole-request failures ---------------------------------------------------------------------


def test_429_is_retryable_with_its_retry_after(
    provider: Provider, adapter: Adapter, fake: RunningFakeESP, message: Outgoing
) -> None:
    fake.esp.set_faults(next=["429"], retry_after=7)
    with pytest.raises(RetryableError, match=provider.rate_limited) as caught:
        adapter.send_batch(message, make_recipients(3))
    assert caught.value.retry_after == provider.retry_after_429
    assert accepted(adapter.send_batch(message, make_recipients(3)))


@pytest.mark.parametrize("fault", ["500", "503"])
def test_server_errors_are_retryable(
    provider: Provider, adapter: Adapter, fake: RunningFakeESP, message: Outgoing, fault: str
) -> None:
    fake.esp.set_faults(next=[fault], retry_after=2.5)
    with pytest.raises(RetryableError, match=fault) as caught:
        adapter.send_batch(message, make_recipients(3))
    assert caught.value.retry_after == (provider.retry_after_503 if fault == "503" else None)
    assert accepted(adapter.send_batch(message, make_recipients(3)))


def test_no_connection_at_all_is_retryable(provider: Provider, message: Outgoing) -> None:
    """Nothing listens on the port: the request never left, so retrying is safe."""
    with running(FakeESP(token=TOKEN)) as gone:
        url = gone.url
    adapter = provider.make(TOKEN, url, 1.0)
    adapter.prepare(message)  # does not raise: the first batch tries again
    with pytest.raises(RetryableError, match="could not connect"):
        adapter.send_batch(message, make_recipients(2))
    adapter.close()


@pytest.mark.parametrize("fault", ["drop", "drop_after"])
def test_a_dropped_connection_leaves_every_recipient_unknown(
    adapter: Adapter, fake: RunningFakeESP, message: Outgoing, record_path: Path, fault: str
) -> None:
    """The whole request reached the fake before it hung up. From the client's side ``drop``
    (nothing processed) and ``drop_after`` (all processed) look exactly alike, so neither may be
    called a failure or retried blindly: both are ``unknown``."""
    fake.esp.set_faults(next=[fault])
    results = adapter.send_batch(message, make_recipients(3))
    assert [r.outcome for r in results] == [Outcome.UNKNOWN] * 3
    assert all("RemoteProtocolError" in (r.error or "") for r in results)
    assert len(read_record(record_path)) == (3 if fault == "drop_after" else 0)
    assert accepted(adapter.send_batch(message, make_recipients(3, 3)))


def test_an_answer_slower_than_the_timeout_leaves_every_recipient_unknown(
    provider: Provider, fake: RunningFakeESP, message: Outgoing, record_path: Path
) -> None:
    """The fake processed the batch and answered too late: resending would deliver twice."""
    adapter = provider.make(TOKEN, fake.url, 0.3)
    adapter.prepare(message)
    fake.esp.set_faults(next=["slow"], slow_seconds=1.5)
    results = adapter.send_batch(message, make_recipients(4))
    adapter.close()
    assert [r.outcome for r in results] == [Outcome.UNKNOWN] * 4
    assert all("ReadTimeout" in (r.error or "") for r in results)
    assert len(read_record(record_path)) == 4  # ... and they were in fact accepted


def test_a_wrong_key_stops_the_send(provider: Provider, fake: RunningFakeESP, message: Outgoing) -> None:
    adapter = provider.make(provider.wrong_key, fake.url, 2.0)
    adapter.prepare(message)  # refused too, but not raised before the first batch
    with pytest.raises(AuthError, match=provider.auth_error):
        adapter.send_batch(message, make_recipients(2))
    assert fake.esp.stats["send_requests"] == 0 and fake.esp.stats["fault_401"] >= 1
    adapter.close()


@pytest.mark.parametrize("how", ["next", "unauthorized"])
def test_a_revoked_key_mid_send_stops_it(
    provider: Provider, adapter: Adapter, fake: RunningFakeESP, message: Outgoing, how: str
) -> None:
    assert accepted(adapter.send_batch(message, make_recipients(1)))
    fake.esp.set_faults(**({"next": ["401"]} if how == "next" else {"unauthorized": True}))
    with pytest.raises(AuthError, match=provider.auth_error):
        adapter.send_batch(message, make_recipients(2))


def test_a_status_no_retry_can_fix_stops_the_send(provider: Provider, message: Outgoing) -> None:
    for response in provider.fatal:
        adapter = provider.scripted(lambda request, response=response: response)  # type: ignore[misc]
        with pytest.raises(AuthError, match=str(response.status_code)):
            adapter.send_batch(message, make_recipients(2))
        adapter.close()


# -- batch limits ---------------------------------------------------------------------------------


def test_a_full_batch_is_accepted(
    provider: Provider, adapter: Adapter, fake: RunningFakeESP, message: Outgoing
) -> None:
    assert adapter.max_batch == provider.limit
    results = adapter.send_batch(message, make_recipients(provider.limit))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * provider.limit
    assert len({r.message_id for r in results}) == (1 if provider.shared_id else provider.limit)
    assert fake.esp.stats["send_requests"] == provider.requests_per_full_batch
    assert fake.esp.stats["accepted"] == provider.limit


def test_a_batch_above_the_limit_is_never_sent(
    provider: Provider, adapter: Adapter, fake: RunningFakeESP, message: Outgoing
) -> None:
    with pytest.raises(ValueError, match=f"at most {provider.limit} "):
        adapter.send_batch(message, make_recipients(provider.limit + 1))
    assert fake.esp.stats["send_requests"] == 0


@pytest.mark.parametrize(
    "provider", [p for p in PROVIDERS if p.over_limit_refusal], ids=lambda p: p.name, indirect=True
)
def test_a_limit_raised_by_mistake_is_refused_as_the_provider_would(
    provider: Provider, adapter: Adapter, fake: RunningFakeESP, message: Outgoing
) -> None:
    adapter.max_batch = provider.limit + 1
    results = adapter.send_batch(message, make_recipients(provider.limit + 1))
    assert {r.outcome for r in results} == {Outcome.FAILED}
    assert (provider.over_limit_refusal or "?") in (results[0].error or "")
    assert fake.esp.stats["refused_too_many"] == 1 and fake.esp.stats["accepted"] == 0


# -- the body sent once where the provider allows -------------------------------------------------


def test_the_body_travels_once_where_the_provider_allows(
    provider: Provider, fake: RunningFakeESP, message: Outgoing
) -> None:
    """Two batches of three: the HTML goes once per send (a template), once per request, or, with
    full bodies, once per message."""
    sent: list[bytes] = []

    def capture(request: httpx.Request) -> None:
        sent.append(request.read())

    adapter = provider.make(TOKEN, fake.url, 2.0)
    adapter._client.event_hooks["request"].append(capture)  # type: ignore[attr-defined]
    try:
        adapter.prepare(message)
        assert accepted(adapter.send_batch(message, make_recipients(3)))
        assert accepted(adapter.send_batch(message, make_recipients(3, start=3)))
    finally:
        adapter.close()
    marker = b"Literal braces stay"
    assert marker in message.html.encode()
    expected = {"send": 1, "request": 2, "message": 6}[provider.body_travels]
    assert sum(body.count(marker) for body in sent) == expected


# -- a whole send ---------------------------------------------------------------------------------

ISSUE = "2026-11-20.yaml"


def test_a_whole_send_reaches_everyone_once(provider: Provider, db_url: str, tmp_path: Path) -> None:
    """``newsletter send`` on four workers through the fake, which answers one batch each 429, 503
    and 500: retried by the engine, nobody twice, nobody lost, every delivery accepted with an id.
    Names that look like template tags stay names."""
    (tmp_path / "issues").mkdir()
    shutil.copy(FIXTURE_ISSUES_DIR / ISSUE, tmp_path / "issues" / ISSUE)
    addresses = [f"reader{i}@example.org" for i in range(provider.audience)]
    path = tmp_path / "list.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name"])
        writer.writerows([address, f"Reader {{{{evil}}}} <{i}>"] for i, address in enumerate(addresses))
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert import_csv(conn, path).added == provider.audience
    finally:
        engine.dispose()

    record = tmp_path / "record.jsonl"
    faults = Faults(next=["429", "503", "500"], retry_after=0.1)
    with running(FakeESP(token=KEY, faults=faults, record=record, record_bodies="text")) as fake:
        env = {
            **clean_environment(),
            **provider.env,
            "NEWSLETTER_DATABASE_URL": db_url,
            "NEWSLETTER_ESP_BASE_URL": fake.url,
            "NEWSLETTER_ESP_TIMEOUT": "10",
            "NEWSLETTER_ESP_WORKERS": "4",
            "NEWSLETTER_SECRET_KEY": "whole-send-test-secret-key-0123456789",
        }
        env.pop("AWS_SESSION_TOKEN", None)
        done = subprocess.run(
            [sys.executable, "-m", "newsletter", "send", f"issues/{ISSUE}", "--yes"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        stats = dict(fake.esp.stats)
        left = len(fake.esp.templates) + len(fake.esp.ses_templates)
    assert done.returncode == 0, done.stderr + done.stdout
    entries = read_record(record)
    assert Counter(entry["recipient"] for entry in entries) == Counter(addresses)
    per_request = provider.limit // provider.requests_per_full_batch
    assert stats["send_requests"] == -(-provider.audience // per_request) + 3
    assert stats["accepted"] == provider.audience
    assert stats["fault_429"] == stats["fault_503"] == stats["fault_500"] == 1
    assert left == 0  # finish deleted what the send made at the provider
    assert len({entry[provider.ids_field]["delivery_id"] for entry in entries}) == provider.audience
    one = next(entry for entry in entries if entry["recipient"] == "reader7@example.org")
    for leftover in ("%%", "%recipient.", "{{{"):
        assert leftover not in one["subject"] and leftover not in one["text"]
    assert "Reader {{evil}} <7>" in str(one["to"])  # a name is only a value
    assert one["headers"]["List-Unsubscribe"].startswith("<http")
    assert "List-Unsubscribe-Post" in one["headers"] and "List-Id" in one["headers"]
    if provider.check_send is not None:
        provider.check_send(entries, stats)

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = [(r.state, r.message_id) for r in ledger_for(conn).deliveries()]
    finally:
        engine.dispose()
    assert len(rows) == provider.audience
    assert {state for state, _ in rows} == {DeliveryState.ACCEPTED}
    assert all(message_id for _, message_id in rows)
