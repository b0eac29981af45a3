"""The SES adapter: the documented SendBulkEmail and template payloads (held to botocore's model of
SES v2), its SigV4 signature (held to botocore's), what each recipient would get (the fake renders
the template as SES's Handlebars does), what every answer becomes, a batch of 500 as ten requests
of 50 and what a failure of one of them leaves, and a whole ``newsletter send`` of 20,000 through
the fake SES on both dialects (``test_adapter_contract.py``).
"""

from __future__ import annotations

import datetime as dt
import email.header
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import time_machine
from hypothesis import given
from hypothesis import strategies as st

from newsletter.config import EspSettings, load_settings
from newsletter.delivery.esp.base import AuthError, Outcome, Outgoing, RetryableError
from newsletter.delivery.esp.registry import adapter_factory
from newsletter.delivery.esp.ses import (
    MAX_BATCH,
    MAX_DESTINATIONS,
    SEND_PATH,
    TEMPLATES_PATH,
    SesAdapter,
    handlebars,
    template_content,
    template_name,
)
from newsletter.devtools.fake_esp import FakeESP, RunningFakeESP
from newsletter.devtools.fake_esp.handlebars import compile_handlebars, render_handlebars
from newsletter.errors import ConfigError
from newsletter.render.slots import fill, html_values
from tests.delivery.conftest import TOKEN, make_message, make_recipient, make_recipients, read_record

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
REGION = "eu-west-1"
NAME = template_name(7, template_content(make_message())[0])


@pytest.fixture
def adapter(fake: RunningFakeESP) -> Iterator[SesAdapter]:
    adapter = SesAdapter(TOKEN, SECRET, REGION, base_url=fake.url, timeout=2.0)
    yield adapter
    adapter.close()


def scripted(
    handler: Callable[[httpx.Request], httpx.Response], **options: Any
) -> tuple[SesAdapter, list[httpx.Request]]:
    """An adapter on a mock transport that makes templates and hands sends to ``handler``."""
    seen: list[httpx.Request] = []

    def route(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.startswith(TEMPLATES_PATH):
            return httpx.Response(200, json={})
        return handler(request)

    client = httpx.Client(
        base_url="https://email.eu-west-1.amazonaws.test", transport=httpx.MockTransport(route)
    )
    return SesAdapter("AKIDEXAMPLE", SECRET, REGION, client=client, **options), seen


def answered(*statuses: str) -> Callable[[httpx.Request], httpx.Response]:
    """A 200 answering the entries with ``statuses``, in order (``SUCCESS`` with a MessageId)."""

    def handler(request: httpx.Request) -> httpx.Response:
        results = [
            {"Status": status, "MessageId": f"0100-{i}-000000"} if status == "SUCCESS" else {"Status": status}
            for i, status in enumerate(statuses)
        ]
        return httpx.Response(200, json={"BulkEmailEntryResults": results})

    return handler


def error(status: int, kind: str, message: str = "nope") -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(
        status, json={"message": message}, headers={"x-amzn-ErrorType": kind}
    )


def validate(operation: str, body: dict[str, Any]) -> None:
    """Raise unless ``body`` is a valid input of ``operation`` in botocore's SES v2 model."""
    import botocore.session
    from botocore.validate import validate_parameters

    model = botocore.session.get_session().get_service_model("sesv2").operation_model(operation)
    validate_parameters(body, model.input_shape)


# -- the requests ------------------------------------------------------------------------------


def test_prepare_makes_one_template_with_triple_stash_tags(message: Outgoing) -> None:
    adapter, seen = scripted(answered())
    adapter.prepare(message)
    adapter.prepare(message)  # once per send and process
    (request,) = seen
    assert request.method == "POST" and request.url.path == "/v2/email/templates"
    body = orjson.loads(request.content)
    validate("CreateEmailTemplate", body)
    assert body["TemplateName"] == NAME
    assert re.fullmatch(r"newsletter-7-[0-9a-f]{16}", NAME)
    content = body["TemplateContent"]
    assert content["Subject"] == message.subject
    assert content["Text"] == (
        "Hello {{{name}}},\n\nLiteral braces: {{{lbrace}}}{not a tag}}\n\n"
        "Unsubscribe: {{{unsubscribe_url}}}\n"
    )
    assert "{{{name_html}}}" in content["Html"] and "{{{unsubscribe_url_html}}}" in content["Html"]
    assert "{{{email_html}}}" in content["Html"] and "%%" not in content["Html"]
    adapter.close()


def test_a_batch_is_one_documented_send_bulk_email_request(message: Outgoing) -> None:
    adapter, seen = scripted(answered("SUCCESS", "SUCCESS", "SUCCESS"))
    recipients = [make_recipient(0), make_recipient(1), make_recipient(4)]  # markup, accents, no name
    results = adapter.send_batch(message, recipients)
    assert [(r.outcome, r.message_id) for r in results] == [
        (Outcome.ACCEPTED, f"0100-{i}-000000") for i in range(3)
    ]
    create, request = seen
    assert create.url.path == TEMPLATES_PATH  # made on first use when prepare was not called
    assert request.method == "POST" and request.url.path == "/v2/email/outbound-bulk-emails"
    assert request.headers["Content-Type"] == "application/json"
    body = orjson.loads(request.content)
    validate("SendBulkEmail", body)
    assert set(body) == {
        "BulkEmailEntries",
        "FromEmailAddress",
        "ReplyToAddresses",
        "DefaultEmailTags",
        "DefaultContent",
    }
    # A non-ASCII display name is RFC 2047-encoded, as SES requires.
    assert body["FromEmailAddress"] == "=?utf-8?q?W=C3=B6chentliche_Rundschau?= <news@example.org>"
    assert body["ReplyToAddresses"] == ["editors@example.org"]
    assert body["DefaultEmailTags"] == [{"Name": "send_id", "Value": "7"}]
    assert body["DefaultContent"] == {
        "Template": {
            "TemplateName": NAME,
            "TemplateData": "{}",
            "Headers": [
                {"Name": "List-Id", "Value": "Weekly <weekly.example.org>"},
                {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"},
            ],
        }
    }
    first, accents, nameless = body["BulkEmailEntries"]
    assert first["Destination"] == {"ToAddresses": ['"<b>Ana</b> & \\"Bo\\"" <reader0@example.com>']}
    assert accents["Destination"] == {"ToAddresses": ["=?utf-8?b?Wm/DqyDDnG5hbA==?= <reader1@example.com>"]}
    assert nameless["Destination"] == {"ToAddresses": ["reader4@example.com"]}
    for entry, recipient in zip(body["BulkEmailEntries"], recipients, strict=True):
        assert set(entry) == {
            "Destination",
            "ReplacementEmailContent",
            "ReplacementTags",
            "ReplacementHeaders",
        }
        values, escaped = recipient.values, html_values(recipient.values)
        data = orjson.loads(
            entry["ReplacementEmailContent"]["ReplacementTemplate"]["ReplacementTemplateData"]
        )
        assert data == {
            "name": values["name"],
            "unsubscribe_url": values["unsubscribe_url"],
            "name_html": escaped["name"],
            "email_html": escaped["email"],
            "unsubscribe_url_html": escaped["unsubscribe_url"],
            "lbrace": "{",  # the fixture's HTML and text hold literal braces before braces
        }
        # SES replaces Message-ID with its own: only List-Unsubscribe is per recipient.
        assert entry["ReplacementHeaders"] == [
            {"Name": "List-Unsubscribe", "Value": recipient.headers["List-Unsubscribe"]}
        ]
        assert entry["ReplacementTags"] == [
            {"Name": "send_id", "Value": "7"},
            {"Name": "delivery_id", "Value": str(recipient.delivery_id)},
        ]
    adapter.close()


def test_a_tag_and_a_configuration_set_go_along_and_no_reply_to_no_field() -> None:
    adapter, seen = scripted(answered("SUCCESS"), configuration_set="newsletter-events")
    message = make_message(tag="issue 2026/11/20", reply_to="", headers={})
    assert adapter.send_batch(message, make_recipients(1))[0].outcome is Outcome.ACCEPTED
    body = orjson.loads(seen[-1].content)
    validate("SendBulkEmail", body)
    assert body["ConfigurationSetName"] == "newsletter-events"
    assert body["DefaultEmailTags"] == [
        {"Name": "send_id", "Value": "7"},
        {"Name": "tag", "Value": "issue_2026_11_20"},  # tag values allow only [A-Za-z0-9_-]
    ]
    assert "ReplyToAddresses" not in body and "Headers" not in body["DefaultContent"]["Template"]


def test_a_non_ascii_list_name_is_encoded_as_ses_requires(
    adapter: SesAdapter, fake: RunningFakeESP, record_path: Path
) -> None:
    """SES takes only printable ASCII header values: the name is RFC 2047-encoded, the id kept."""
    message = make_message(headers={"List-Id": "Wöchentliche Rundschau <weekly.example.org>"})
    assert adapter.send_batch(message, make_recipients(1))[0].outcome is Outcome.ACCEPTED
    value = read_record(record_path)[0]["headers"]["List-Id"]
    assert value.isascii() and value.endswith(" <weekly.example.org>")
    assert str(email.header.make_header(email.header.decode_header(value))) == (
        "Wöchentliche Rundschau <weekly.example.org>"
    )


def test_an_existing_template_is_updated_with_this_content(message: Outgoing) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST" and request.url.path == TEMPLATES_PATH:
            return error(400, "AlreadyExistsException", f"Template {NAME} already exists.")(request)
        return httpx.Response(200, json={})

    client = httpx.Client(base_url="https://ses.test", transport=httpx.MockTransport(handler))
    adapter = SesAdapter("AKIDEXAMPLE", SECRET, REGION, client=client)
    adapter.prepare(message)
    create, update = seen
    assert update.method == "PUT" and update.url.path == f"/v2/email/templates/{NAME}"
    body = orjson.loads(update.content)
    validate("UpdateEmailTemplate", {"TemplateName": NAME, **body})
    assert body["TemplateContent"] == orjson.loads(create.content)["TemplateContent"]
    adapter.close()


def test_a_test_copy_or_another_send_never_touches_this_sends_template(
    fake: RunningFakeESP, message: Outgoing
) -> None:
    """A ``[TEST]`` copy of the same issue (send 0), made while the send runs, gets a template of
    its own: it can neither change the subject the send's recipients get nor delete its template."""
    sending = SesAdapter(TOKEN, SECRET, REGION, base_url=fake.url)
    sending.prepare(message)
    test_copy = make_message(send_id=0, subject=f"[TEST] {message.subject}")
    tester = SesAdapter(TOKEN, SECRET, REGION, base_url=fake.url)
    tester.prepare(test_copy)
    assert len(fake.esp.ses_templates) == 2
    tester.finish(test_copy)
    assert list(fake.esp.ses_templates) == [NAME]
    assert fake.esp.ses_templates[NAME].subject == message.subject
    rerun = SesAdapter(TOKEN, SECRET, REGION, base_url=fake.url)  # another process, a resume
    rerun.prepare(message)
    assert fake.esp.stats["ses_templates_created"] == 2 and fake.esp.stats["ses_templates_updated"] == 1
    for adapter in (sending, tester, rerun):
        adapter.close()


@pytest.mark.parametrize("kind", ["BadRequestException", "LimitExceededException"])
def test_a_template_ses_will_not_take_stops_the_send(message: Outgoing, kind: str) -> None:
    client = httpx.Client(base_url="https://ses.test", transport=httpx.MockTransport(error(400, kind)))
    adapter = SesAdapter("AKIDEXAMPLE", SECRET, REGION, client=client)
    adapter.prepare(message)  # not raised here: the first batch raises it, under the engine's rules
    with pytest.raises(AuthError, match=kind):
        adapter.send_batch(message, make_recipients(1))


# -- a batch of up to 500: requests of 50, one after another -----------------------------------------


def entries_per_request(adapter: SesAdapter) -> list[list[str]]:
    """Each ``SendBulkEmail`` request's destinations, in the order they left (a request hook)."""
    sent: list[list[str]] = []

    def capture(request: httpx.Request) -> None:
        if request.url.path == SEND_PATH:
            body = orjson.loads(request.read())
            sent.append([entry["Destination"]["ToAddresses"][0] for entry in body["BulkEmailEntries"]])

    adapter._client.event_hooks["request"].append(capture)
    return sent


def test_a_full_batch_is_ten_requests_of_fifty_answered_in_order(
    adapter: SesAdapter, fake: RunningFakeESP, message: Outgoing, record_path: Path
) -> None:
    sent = entries_per_request(adapter)
    recipients = make_recipients(MAX_BATCH)
    results = adapter.send_batch(message, recipients)
    assert [len(request) for request in sent] == [MAX_DESTINATIONS] * 10
    assert [address.rpartition("<")[2].rstrip(">") for request in sent for address in request] == [
        r.email for r in recipients
    ]
    assert [r.delivery_id for r in results] == [r.delivery_id for r in recipients]
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * MAX_BATCH
    record = {entry["recipient"]: entry["message_id"] for entry in read_record(record_path)}
    assert [record[r.email] for r in recipients] == [r.message_id for r in results]
    assert len(set(record.values())) == MAX_BATCH
    assert fake.esp.stats["send_requests"] == 10 and fake.esp.stats["ses_templates_created"] == 1


def test_a_batch_of_120_is_50_50_20_and_a_refused_address_keeps_its_place(
    adapter: SesAdapter, fake: RunningFakeESP, message: Outgoing
) -> None:
    sent = entries_per_request(adapter)
    recipients = make_recipients(120)
    recipients[60] = make_recipient(60, email="jörg@example.com")  # SES sends no SMTPUTF8
    results = adapter.send_batch(message, recipients)
    assert [len(request) for request in sent] == [50, 49, 20]
    assert [r.delivery_id for r in results] == [r.delivery_id for r in recipients]
    outcomes = [r.outcome for r in results]
    assert outcomes == [Outcome.ACCEPTED] * 60 + [Outcome.FAILED] + [Outcome.ACCEPTED] * 59
    assert "ASCII" in (results[60].error or "")


def test_a_limit_raised_by_mistake_still_sends_no_request_over_fifty(
    adapter: SesAdapter, fake: RunningFakeESP, message: Outgoing
) -> None:
    adapter.max_batch = MAX_BATCH + 1
    results = adapter.send_batch(message, make_recipients(MAX_BATCH + 1))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * (MAX_BATCH + 1)
    assert fake.esp.stats["send_requests"] == 11 and fake.esp.stats["refused_too_many"] == 0


def test_a_timeout_on_the_fourth_request_leaves_only_its_fifty_unknown(
    fake: RunningFakeESP, message: Outgoing, record_path: Path
) -> None:
    """Requests 1-3 were answered: accepted, with their ids. The 4th was processed and answered
    too late: its 50 are unknown (resending could deliver twice). The 300 after it never left:
    they wait (``retry``), and go through when sent again."""
    adapter = SesAdapter(TOKEN, SECRET, REGION, base_url=fake.url, timeout=0.3)
    try:
        adapter.prepare(message)
        fake.esp.set_faults(next=["ok", "ok", "ok", "slow"], slow_seconds=1.5)
        recipients = make_recipients(MAX_BATCH)
        results = adapter.send_batch(message, recipients)
        assert [r.delivery_id for r in results] == [r.delivery_id for r in recipients]
        outcomes = [r.outcome for r in results]
        assert outcomes == [Outcome.ACCEPTED] * 150 + [Outcome.UNKNOWN] * 50 + [Outcome.RETRY] * 300
        assert all(r.message_id for r in results[:150])
        assert all("ReadTimeout" in (r.error or "") for r in results[150:200])
        assert all(r.message_id is None and "not sent" in (r.error or "") for r in results[200:])
        assert fake.esp.stats["send_requests"] == 4
        assert len(read_record(record_path)) == 200  # the unanswered request was in fact taken
        again = adapter.send_batch(message, recipients[200:])
        assert [r.outcome for r in again] == [Outcome.ACCEPTED] * 300
    finally:
        adapter.close()
    recorded = [entry["recipient"] for entry in read_record(record_path)]
    assert sorted(recorded) == sorted(r.email for r in recipients)  # each once


@pytest.mark.parametrize("fault", ["503", "429", "401"])
def test_a_later_request_refused_whole_keeps_what_was_accepted(
    adapter: SesAdapter, fake: RunningFakeESP, message: Outgoing, fault: str
) -> None:
    """A 5xx, a 429 or a revoked key on the third request: the first hundred stay accepted, the
    rest wait with the reason (as Postmark's requests of fifty); the same on the first request is
    the whole batch's, raised, as the engine's retries and stop rules expect."""
    fake.esp.set_faults(next=["ok", "ok", fault])
    results = adapter.send_batch(message, make_recipients(MAX_BATCH))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 100 + [Outcome.RETRY] * 400
    expected = "403" if fault == "401" else fault
    assert all(expected in (r.error or "") for r in results[100:])
    assert fake.esp.stats["send_requests"] == 3
    fake.esp.set_faults(next=[fault])
    with pytest.raises(AuthError if fault == "401" else RetryableError):
        adapter.send_batch(message, make_recipients(MAX_BATCH, start=MAX_BATCH))


def test_the_accounts_own_status_in_a_later_request_keeps_what_was_accepted(message: Outgoing) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        count = len(orjson.loads(request.content)["BulkEmailEntries"])
        first = sum(r.url.path == SEND_PATH for r in seen) == 1
        return answered(*(["SUCCESS"] if first else ["ACCOUNT_SUSPENDED"]) * count)(request)

    adapter, seen = scripted(handler)
    results = adapter.send_batch(message, make_recipients(150))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 50 + [Outcome.RETRY] * 100
    assert "ACCOUNT_SUSPENDED" in (results[-1].error or "")
    assert sum(r.url.path == SEND_PATH for r in seen) == 2  # the stop ends the batch
    adapter.close()


def test_an_unreadable_answer_to_a_later_request_leaves_only_it_unknown(message: Outgoing) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        count = len(orjson.loads(request.content)["BulkEmailEntries"])
        if sum(r.url.path == SEND_PATH for r in seen) == 2:
            return httpx.Response(200, text="<html>proxy</html>")
        return answered(*["SUCCESS"] * count)(request)

    adapter, seen = scripted(handler)
    results = adapter.send_batch(message, make_recipients(150))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 50 + [Outcome.UNKNOWN] * 50 + [
        Outcome.RETRY
    ] * 50
    assert "unreadable" in (results[50].error or "")
    adapter.close()


def test_a_template_gone_is_made_again_before_the_next_request_of_the_batch(
    adapter: SesAdapter, fake: RunningFakeESP, message: Outgoing
) -> None:
    adapter.prepare(message)
    fake.esp.ses_templates.clear()  # deleted behind our back
    results = adapter.send_batch(message, make_recipients(120))
    assert [r.outcome for r in results] == [Outcome.RETRY] * 50 + [Outcome.ACCEPTED] * 70
    assert (results[0].error or "").startswith("TEMPLATE_NOT_FOUND")
    assert fake.esp.stats["ses_templates_created"] == 2 and fake.esp.stats["send_requests"] == 3


def test_a_404_for_the_template_in_a_later_request_keeps_the_first_and_remakes_it(
    message: Outgoing,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        count = len(orjson.loads(request.content)["BulkEmailEntries"])
        if sum(r.url.path == SEND_PATH for r in seen) == 2:
            return error(404, "NotFoundException", f"Template {NAME} does not exist.")(request)
        return answered(*["SUCCESS"] * count)(request)

    adapter, seen = scripted(handler)
    results = adapter.send_batch(message, make_recipients(150))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 50 + [Outcome.RETRY] * 100
    assert "made again" in (results[-1].error or "")
    assert [r.outcome for r in adapter.send_batch(message, make_recipients(100, 50))] == [
        Outcome.ACCEPTED
    ] * 100
    assert [r.url.path for r in seen].count(TEMPLATES_PATH) == 2
    adapter.close()


# -- editor text is never a template expression -------------------------------------------------

#: Everything Handlebars could read as a tag, an escape, a comment or a raw block.
HOSTILE = "{{evil}} \\{{evil}} \\\\{{evil}} {{{evil}}} {{{{raw}}}} {{!x}} {{#each a}}x{{/each}} {%%name%%} \\"


def test_braces_in_editor_text_are_sent_literally(
    adapter: SesAdapter, fake: RunningFakeESP, record_path: Path
) -> None:
    message = make_message(subject=f"S {HOSTILE}", text=f"T {HOSTILE}", html=f"<p>H {HOSTILE}</p>")
    recipient = make_recipient(3)  # name "Plain"
    assert adapter.send_batch(message, [recipient])[0].outcome is Outcome.ACCEPTED
    (entry,) = read_record(record_path)
    literal = HOSTILE.replace("%%name%%", "Plain")
    assert entry["subject"] == f"S {literal}"
    assert entry["text"] == f"T {literal}"
    assert entry["html"] == f"<p>H {literal}</p>"
    assert "ses_rendering_failures" not in fake.esp.stats


def test_the_renderer_would_have_run_the_unneutralised_text() -> None:
    """The fake is a real test: the same text, not neutralised, is a live template."""
    rendered = render_handlebars(compile_handlebars("{{evil}}|\\{{evil}}|\\\\{{evil}}"), {"evil": "<X>"})
    assert rendered == "&lt;X&gt;|{{evil}}|\\&lt;X&gt;"


@given(
    st.lists(
        st.sampled_from(["{", "}", "\\", "%", "a", " ", "%%name%%", "%%email%%", "%%unsubscribe_url%%", "é"]),
        max_size=30,
    ).map("".join)
)
def test_any_text_renders_as_itself_with_only_the_slots_filled(text: str) -> None:
    values = {"name": "<N&{{x}}>", "email": "e\\{{@x", "unsubscribe_url": "u{{{"}
    template, literals = handlebars(text, "{{{%s}}}")
    data = {**values, **{key: {"lbrace": "{", "backslash": "\\"}[key] for key in literals}}
    assert render_handlebars(compile_handlebars(template), data) == fill(text, values)


# -- SigV4 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("session_token", ["", "FwoGZXIvYXdzEJr//////////wEaDOEXAMPLETOKEN"])
def test_the_signature_is_botocores(message: Outgoing, session_token: str) -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"BulkEmailEntryResults": [{"Status": "SUCCESS", "MessageId": "m"}]})

    client = httpx.Client(
        base_url="https://email.eu-west-1.amazonaws.com", transport=httpx.MockTransport(handler)
    )
    adapter = SesAdapter("AKIDEXAMPLE", SECRET, REGION, session_token=session_token, client=client)
    with time_machine.travel(dt.datetime(2026, 11, 25, 9, 30, 15, tzinfo=dt.UTC), tick=False):
        adapter.send_batch(message, make_recipients(1))
        for request in sent:
            authorization = request.headers["Authorization"]
            signed = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
            assert {"host", "x-amz-date", "content-type"} <= set(signed)
            assert ("x-amz-security-token" in signed) == bool(session_token)
            theirs = AWSRequest(
                method=request.method,
                url=str(request.url),
                data=request.content,
                headers={name: request.headers[name] for name in signed if name != "host"},
            )
            SigV4Auth(Credentials("AKIDEXAMPLE", SECRET, session_token or None), "ses", REGION).add_auth(
                theirs
            )
            assert theirs.headers["X-Amz-Date"] == request.headers["x-amz-date"] == "20261125T093015Z"
            assert authorization == theirs.headers["Authorization"]
            assert authorization.startswith(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261125/eu-west-1/ses/aws4_request, "
            )
    assert [r.url.path for r in sent] == [TEMPLATES_PATH, SEND_PATH]
    adapter.close()


# -- addresses SES cannot take ------------------------------------------------------------------


def test_an_address_ses_cannot_take_fails_alone(
    adapter: SesAdapter, fake: RunningFakeESP, message: Outgoing, record_path: Path
) -> None:
    recipients = [
        make_recipient(0),
        make_recipient(1, email="jörg@example.com"),  # SES sends no SMTPUTF8
        make_recipient(2, email="reader2@bücher.example"),  # an IDN domain goes as Punycode
    ]
    results = adapter.send_batch(message, recipients)
    by_id = {r.delivery_id: r for r in results}
    assert by_id[1000].outcome is Outcome.ACCEPTED and by_id[1002].outcome is Outcome.ACCEPTED
    assert by_id[1001].outcome is Outcome.FAILED and "ASCII" in (by_id[1001].error or "")
    assert sorted(e["recipient"] for e in read_record(record_path)) == [
        "reader0@example.com",
        "reader2@xn--bcher-kva.example",
    ]


# -- per-entry statuses -----------------------------------------------------------------------


def test_per_entry_statuses_fail_retry_or_accept_each_recipient(
    adapter: SesAdapter, fake: RunningFakeESP, message: Outgoing, record_path: Path
) -> None:
    fake.esp.set_faults(
        statuses={
            "READER1@example.com": "MESSAGE_REJECTED",
            "reader2@example.com": "ACCOUNT_THROTTLED",
            "reader3@example.com": "INVALID_PARAMETER",
            "reader4@example.com": "TRANSIENT_FAILURE",
            "reader5@example.com": "ACCOUNT_DAILY_QUOTA_EXCEEDED",
            "reader6@example.com": "FAILED",
        }
    )
    results = adapter.send_batch(message, make_recipients(8))
    assert [r.outcome for r in results] == [
        Outcome.ACCEPTED,
        Outcome.FAILED,
        Outcome.RETRY,
        Outcome.FAILED,
        Outcome.RETRY,
        Outcome.RETRY,
        Outcome.FAILED,
        Outcome.ACCEPTED,
    ]
    assert results[1].error is not None and results[1].error.startswith("MESSAGE_REJECTED")
    assert sorted(e["recipient"] for e in read_record(record_path)) == [
        "reader0@example.com",
        "reader7@example.com",
    ]


@pytest.mark.parametrize(
    "status",
    [
        "MAIL_FROM_DOMAIN_NOT_VERIFIED",
        "ACCOUNT_SUSPENDED",
        "ACCOUNT_SENDING_PAUSED",
        "CONFIGURATION_SET_NOT_FOUND",
    ],
)
def test_the_accounts_own_statuses_stop_the_send_and_fail_nobody(message: Outgoing, status: str) -> None:
    adapter, _ = scripted(answered(status, status))
    with pytest.raises(AuthError, match=status):
        adapter.send_batch(message, make_recipients(2))
    # Should SES take some before it stops, those are kept and the rest wait.
    adapter, _ = scripted(answered("SUCCESS", status))
    results = adapter.send_batch(message, make_recipients(2))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.RETRY]


def test_a_template_gone_mid_send_is_made_again(
    adapter: SesAdapter, fake: RunningFakeESP, message: Outgoing
) -> None:
    adapter.prepare(message)
    fake.esp.ses_templates.clear()  # deleted behind our back
    results = adapter.send_batch(message, make_recipients(2))
    assert [r.outcome for r in results] == [Outcome.RETRY] * 2
    assert (results[0].error or "").startswith("TEMPLATE_NOT_FOUND")
    retried = adapter.send_batch(message, make_recipients(2))
    assert [r.outcome for r in retried] == [Outcome.ACCEPTED] * 2
    assert fake.esp.stats["ses_templates_created"] == 2


def test_an_answer_that_does_not_match_the_entries_leaves_them_unknown(message: Outgoing) -> None:
    for handler in (
        answered("SUCCESS"),  # one result for two entries
        lambda request: httpx.Response(200, text="<html>proxy</html>"),
        lambda request: httpx.Response(200, json=[1, 2]),
        lambda request: httpx.Response(200, json={"BulkEmailEntryResults": ["x", {"Status": 5}]}),
    ):
        adapter, _ = scripted(handler)
        results = adapter.send_batch(message, make_recipients(2))
        assert [r.outcome for r in results] == [Outcome.UNKNOWN] * 2


# -- whole-request failures -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "AccountSuspendedException"),
        (400, "SendingPausedException"),
        (400, "MailFromDomainNotVerifiedException"),
        (400, "LimitExceededException"),
        (403, "AccessDeniedException"),
        (413, "RequestEntityTooLarge"),
    ],
)
def test_refusals_no_recipient_caused_stop_the_send(message: Outgoing, status: int, kind: str) -> None:
    adapter, _ = scripted(error(status, kind))
    with pytest.raises(AuthError, match=kind):
        adapter.send_batch(message, make_recipients(2))


def test_the_error_type_is_read_from_the_body_too(message: Outgoing) -> None:
    body = {"__type": "com.amazonaws.ses#AccountSuspendedException", "message": "suspended"}
    adapter, _ = scripted(lambda request: httpx.Response(400, json=body))
    with pytest.raises(AuthError, match="AccountSuspendedException: suspended"):
        adapter.send_batch(message, make_recipients(1))


def test_a_404_remakes_the_template_unless_the_configuration_set_is_missing(message: Outgoing) -> None:
    adapter, seen = scripted(error(404, "NotFoundException", f"Template {NAME} does not exist."))
    with pytest.raises(RetryableError, match="made again"):
        adapter.send_batch(message, make_recipients(1))
    with pytest.raises(RetryableError):
        adapter.send_batch(message, make_recipients(1))
    assert [r.url.path for r in seen].count(TEMPLATES_PATH) == 2
    adapter, _ = scripted(error(404, "NotFoundException", "Configuration set news does not exist."))
    with pytest.raises(AuthError, match="Configuration set"):
        adapter.send_batch(message, make_recipients(1))


def test_one_template_per_send_and_finish_deletes_it_and_tolerates_it_gone(
    adapter: SesAdapter, fake: RunningFakeESP, message: Outgoing, record_path: Path
) -> None:
    adapter.prepare(message)
    assert NAME in fake.esp.ses_templates
    assert all(r.outcome is Outcome.ACCEPTED for r in adapter.send_batch(message, make_recipients(3)))
    assert {e["provider"] for e in read_record(record_path)} == {"ses"}
    assert {e["template"] for e in read_record(record_path)} == {NAME}
    assert fake.esp.stats["ses_templates_created"] == 1
    adapter.finish(message)
    adapter.finish(message)  # 404: nothing left to do
    assert not fake.esp.ses_templates and fake.esp.stats["ses_templates_deleted"] == 1


# -- the fake, as botocore sees it -----------------------------------------------------------------


def test_the_fake_speaks_ses_as_botocore_expects(fake: RunningFakeESP, record_path: Path) -> None:
    import botocore.session
    from botocore.config import Config

    def client(key: str = TOKEN) -> Any:
        return botocore.session.get_session().create_client(
            "sesv2",
            region_name=REGION,
            endpoint_url=fake.url,
            aws_access_key_id=key,
            aws_secret_access_key=SECRET,
            config=Config(retries={"max_attempts": 1}),
        )

    ses = client()
    content = {"Subject": "Hi {{name}}", "Text": "Hello {{name}} & co", "Html": "<p>{{name}}</p>"}
    ses.create_email_template(TemplateName="t1", TemplateContent=content)
    with pytest.raises(ses.exceptions.AlreadyExistsException):
        ses.create_email_template(TemplateName="t1", TemplateContent=content)
    with pytest.raises(ses.exceptions.NotFoundException):
        ses.update_email_template(TemplateName="nope", TemplateContent=content)
    with pytest.raises(ses.exceptions.BadRequestException, match="not valid"):
        ses.create_email_template(
            TemplateName="t2", TemplateContent={**content, "Text": "{{#each x}}{{/each}}"}
        )
    assert ses.get_email_template(TemplateName="t1")["TemplateContent"] == content

    answer = ses.send_bulk_email(
        FromEmailAddress="news@example.org",
        DefaultContent={"Template": {"TemplateName": "t1", "TemplateData": "{}"}},
        BulkEmailEntries=[
            {
                "Destination": {"ToAddresses": ["a@example.com"]},
                "ReplacementEmailContent": {
                    "ReplacementTemplate": {"ReplacementTemplateData": '{"name": "<A>"}'}
                },
            },
            {"Destination": {"ToAddresses": ["nobody"]}},
        ],
    )
    first, second = answer["BulkEmailEntryResults"]
    assert first["Status"] == "SUCCESS" and first["MessageId"]
    assert second["Status"] == "INVALID_PARAMETER"
    (entry,) = read_record(record_path)
    # Handlebars escapes {{x}} in every part: the reason the adapter writes only {{{x}}}.
    assert (entry["subject"], entry["text"], entry["html"]) == (
        "Hi &lt;A&gt;",
        "Hello &lt;A&gt; & co",
        "<p>&lt;A&gt;</p>",
    )

    with pytest.raises(ses.exceptions.BadRequestException, match="at most 50"):
        ses.send_bulk_email(
            FromEmailAddress="news@example.org",
            DefaultContent={"Template": {"TemplateName": "t1"}},
            BulkEmailEntries=[{"Destination": {"ToAddresses": [f"r{i}@example.com"]}} for i in range(51)],
        )
    with pytest.raises(ses.exceptions.BadRequestException, match="ReplacementTags"):
        ses.send_bulk_email(
            FromEmailAddress="news@example.org",
            DefaultContent={"Template": {"TemplateName": "t1"}},
            BulkEmailEntries=[
                {
                    "Destination": {"ToAddresses": ["a@example.com"]},
                    "ReplacementTags": [{"Name": "id", "Value": "not ok"}],
                }
            ],
        )
    ses.delete_email_template(TemplateName="t1")
    with pytest.raises(ses.exceptions.NotFoundException):
        ses.delete_email_template(TemplateName="t1")
    with pytest.raises(ses.exceptions.ClientError, match="UnrecognizedClientException"):
        client("AKIDWRONG").delete_email_template(TemplateName="t1")
    assert fake.esp.stats["refused_too_many"] == 1


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer test-server-token",
        "AWS4-HMAC-SHA256 Credential=test-server-token/20261125/eu-west-1/ses/aws4_request",
        "AWS4-HMAC-SHA256 Credential=test-server-token/20261125/eu-west-1/s3/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
    ],
)
def test_the_fake_refuses_a_request_not_signed_for_ses(
    fake: RunningFakeESP, authorization: str | None
) -> None:
    headers = {"X-Amz-Date": "20261125T093015Z"}
    if authorization:
        headers["Authorization"] = authorization
    answer = httpx.post(f"{fake.url}{SEND_PATH}", json={}, headers=headers, timeout=5)
    assert answer.status_code == 403
    assert answer.headers["x-amzn-ErrorType"].endswith("Exception") and answer.json()["message"]
    assert fake.esp.stats["send_requests"] == 0


@pytest.mark.parametrize(
    "body", [b"", b"null", b"[]", b'{"BulkEmailEntries": "x"}', b"\xff\xfe", b'{"BulkEmailEntries": [1]}']
)
def test_the_fake_answers_garbage_with_a_400(fake: RunningFakeESP, body: bytes) -> None:
    adapter = SesAdapter(TOKEN, SECRET, REGION, base_url=fake.url)
    answer = adapter._client.post(SEND_PATH, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and answer.headers["x-amzn-ErrorType"] == "BadRequestException"
    adapter.close()


def test_statuses_faults_are_checked() -> None:
    esp = FakeESP()
    with pytest.raises(ValueError, match="statuses"):
        esp.set_faults(statuses={"a@example.com": "NOT_A_STATUS"})
    with pytest.raises(ValueError, match="statuses"):
        esp.set_faults(statuses={"a@example.com": "SUCCESS"})
    esp.close()


# -- configuration ------------------------------------------------------------------------------

AWS = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": SECRET}


def test_credentials_come_from_the_aws_variables_and_the_region_is_required() -> None:
    esp = EspSettings(provider="ses", region=" EU-West-1 ")
    assert esp.region == "eu-west-1"
    with pytest.raises(ConfigError, match=r"esp\.region: SES needs"):
        adapter_factory(EspSettings(provider="ses"), AWS)
    for bad in ("eu", "us", "eu-west", "eu_west_1", "http://x", "eu-west-1a"):
        with pytest.raises(ConfigError, match=r"esp\.region"):
            adapter_factory(EspSettings(provider="ses", region=bad), AWS)
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID"):
        adapter_factory(esp, {"AWS_SECRET_ACCESS_KEY": SECRET})
    with pytest.raises(ConfigError, match="AWS_SECRET_ACCESS_KEY"):
        adapter_factory(esp, {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE"})
    adapter = adapter_factory(esp, AWS)()
    assert isinstance(adapter, SesAdapter) and adapter.max_batch == MAX_BATCH == 500
    assert MAX_DESTINATIONS == 50
    assert str(adapter._client.base_url).rstrip("/") == "https://email.eu-west-1.amazonaws.com"
    adapter.close()
    for region in ("us-east-1", "ap-southeast-2", "us-gov-west-1", "eu-central-2"):
        adapter_factory(EspSettings(provider="ses", region=region), AWS)().close()


def test_base_url_session_token_and_configuration_set_reach_the_adapter() -> None:
    settings = load_settings(
        environ={
            "NEWSLETTER_ESP_PROVIDER": "ses",
            "NEWSLETTER_ESP_REGION": "us-east-1",
            "NEWSLETTER_ESP_BASE_URL": "http://127.0.0.1:9/",
            "NEWSLETTER_ESP_CONFIGURATION_SET": "newsletter-events",
        }
    )
    adapter = adapter_factory(settings.esp, {**AWS, "AWS_SESSION_TOKEN": "tok"})()
    assert isinstance(adapter, SesAdapter)
    assert str(adapter._client.base_url).rstrip("/") == "http://127.0.0.1:9"
    assert adapter.configuration_set == "newsletter-events"
    assert adapter._client.auth.security_token == "tok"  # type: ignore[union-attr]
    adapter.close()
    for bad in ("has space", "x" * 65, "a/b"):
        with pytest.raises(ConfigError, match=r"esp\.configuration_set"):
            load_settings(environ={"NEWSLETTER_ESP_CONFIGURATION_SET": bad})


def test_the_region_means_the_providers_own() -> None:
    """[esp] region is Mailgun's us/eu for Mailgun and an AWS region for SES: each checked by its own."""
    with pytest.raises(ConfigError, match="Mailgun's region must be us or eu"):
        adapter_factory(
            EspSettings(provider="mailgun", domain="mg.example.org", region="eu-west-1"),
            {"MAILGUN_API_KEY": "k"},
        )
    adapter_factory(EspSettings(provider="postmark", region="anything"), {"POSTMARK_TOKEN": "t"})().close()
