"""The Postmark adapter's own part, against the fake Postmark on 127.0.0.1: its templates, its
fast encodings, requests of fifty for full bodies, its per-message ErrorCodes. What every adapter
must do is the contract, ``test_adapter_contract.py`` (both modes).

The fake really renders templates, so "what a recipient would get" is read from its record and
compared with what the bodies must be: the rendered issue with this recipient's values filled in,
escaped for HTML.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import orjson
import pytest

from newsletter.delivery.esp import postmark
from newsletter.delivery.esp.base import AuthError, Outcome, Outgoing, Result
from newsletter.delivery.esp.http import parse_retry_after
from newsletter.delivery.esp.postmark import Mode, PostmarkAdapter, mustachio, template_alias
from newsletter.devtools.fake_esp import RunningFakeESP, compile_mustachio, render_mustachio
from tests.delivery.conftest import TOKEN, make_message, make_recipient, make_recipients, read_record


@pytest.fixture(params=[True, False], ids=["templates", "plain"])
def templates(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def adapter(fake: RunningFakeESP, templates: bool) -> Iterator[PostmarkAdapter]:
    adapter = PostmarkAdapter(TOKEN, base_url=fake.url, templates=templates, timeout=2.0)
    yield adapter
    adapter.close()


def by_id(results: list[Result]) -> dict[int, Result]:
    assert len({r.delivery_id for r in results}) == len(results)
    return {r.delivery_id: r for r in results}


# -- what each recipient gets ------------------------------------------------------------------


def test_each_message_carries_postmarks_own_fields(
    adapter: PostmarkAdapter, message: Outgoing, record_path: Any
) -> None:
    """The bodies, ids and headers are the contract's; the address, sender and stream Postmark's."""
    recipients = make_recipients(5)
    adapter.prepare(message)
    assert {r.outcome for r in adapter.send_batch(message, recipients)} == {Outcome.ACCEPTED}
    record = {entry["recipient"]: entry for entry in read_record(record_path)}
    for recipient in recipients:
        entry = record[recipient.email]
        name, address = email.utils.parseaddr(entry["to"])
        assert (name, address) == (recipient.name, recipient.email)
        assert entry["from"] == message.from_header and entry["reply_to"] == message.reply_to
        assert entry["stream"] == "broadcast"
        escaped_url = recipient.values["unsubscribe_url"].replace("&", "&amp;")
        assert f'href="{escaped_url}"' in entry["html"]
        assert f"Unsubscribe: {recipient.values['unsubscribe_url']}" in entry["text"]


def test_template_mode_sends_the_body_once(fake: RunningFakeESP, message: Outgoing, record_path: Any) -> None:
    adapter = PostmarkAdapter(TOKEN, base_url=fake.url)
    adapter.prepare(message)
    adapter.send_batch(message, make_recipients(3))
    adapter.send_batch(message, make_recipients(3, start=3))
    adapter.close()
    assert fake.esp.stats["templates_created"] == 1
    (template,) = fake.esp.templates.values()
    assert template.alias == "newsletter-7-0123456789abcdef"
    assert "%%" not in template.html_body and "{{name}}" in template.html_body
    assert {e["template"] for e in read_record(record_path)} == {"newsletter-7-0123456789abcdef"}


def test_a_test_copy_during_the_send_leaves_the_sends_template_alone(
    fake: RunningFakeESP, message: Outgoing, record_path: Any
) -> None:
    """``send --test`` renders the same issue (same content key) as send 0 with a "[TEST]" subject:
    it must neither rewrite the running send's template nor delete it when it finishes."""
    sending = PostmarkAdapter(TOKEN, base_url=fake.url)
    sending.prepare(message)
    sending.send_batch(message, make_recipients(2))
    test_copy = replace(message, send_id=0, subject="[TEST] " + message.subject)
    tester = PostmarkAdapter(TOKEN, base_url=fake.url)
    tester.prepare(test_copy)
    tester.send_batch(test_copy, make_recipients(1, start=100))
    tester.finish(test_copy)
    tester.close()
    results = sending.send_batch(message, make_recipients(2, start=2))
    sending.close()
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 2
    (template,) = fake.esp.templates.values()
    assert template.alias == "newsletter-7-0123456789abcdef"
    subjects = [e["subject"] for e in read_record(record_path)]
    assert sum(s.startswith("[TEST] ") for s in subjects) == 1 and len(subjects) == 5


def test_the_record_has_one_line_per_accepted_message(
    adapter: PostmarkAdapter, fake: RunningFakeESP, message: Outgoing, record_path: Any
) -> None:
    fake.esp.set_faults(inactive=["reader3@example.com"])
    results = adapter.send_batch(message, make_recipients(adapter.max_batch))
    accepted = [r for r in results if r.outcome is Outcome.ACCEPTED]
    assert len(accepted) == adapter.max_batch - 1
    record = read_record(record_path)
    assert len(record) == adapter.max_batch - 1
    assert sorted(e["message_id"] for e in record) == sorted(r.message_id or "" for r in accepted)


def test_mustachio_translation_escapes_literal_braces() -> None:
    body = "a { b } {{c}} {%%name%%} {{{d}}} %%email%%"
    translated, needs_brace = mustachio(body)
    assert needs_brace
    model = {"name": "<N>", "email": "e@x", "lbrace": "{"}
    rendered = render_mustachio(compile_mustachio(translated), model, escape=True)
    assert rendered == "a { b } {{c}} {&lt;N&gt;} {{{d}}} e@x"
    assert mustachio("p { color: red }") == ("p { color: red }", False)
    assert template_alias("ab/cd" * 10, 3) == "newsletter-3-abcdabcdabcdabcd"
    assert template_alias("", 3) == "newsletter-3-issue"


def test_the_fast_full_body_encoding_is_the_documented_message(fake: RunningFakeESP) -> None:
    """``_encode_plain`` splices pre-encoded bodies; each message must parse to ``_plain``."""
    html = '<p title="%%name%%">Hi %%name%%, \\ "quoted" \u2028 ü</p><a href="%%unsubscribe_url%%">x</a>'
    message = make_message(subject="For %%name%%", html=html, text='Hello %%name%% %%email%%\n\t"end"')
    names = ["Ann", ' "Quoted" \\ Name ', "<b>&amp;</b>", "Ünïcødé", "", "Line\u2028Sep", "Del\x7f"]
    names.append("%%name%%")
    recipients = [make_recipient(i, name=name) for i, name in enumerate(names)]
    adapter = PostmarkAdapter(token=TOKEN, base_url=fake.url, templates=False)
    try:
        encoded = adapter._encode_plain(message, recipients)
        expected = [adapter._plain(message, r) for r in recipients]
        # No slots at all, and a body that is only a slot.
        bare = make_message(key="bare-content", subject="S", html="%%name%%", text="plain")
        assert [orjson.loads(m) for m in adapter._encode_plain(bare, recipients[:3])] == [
            adapter._plain(bare, r) for r in recipients[:3]
        ]
    finally:
        adapter.close()
    assert [orjson.loads(item) for item in encoded] == expected
    assert "&lt;b&gt;&amp;amp;&lt;/b&gt;" in expected[2]["HtmlBody"]
    assert "<b>&amp;</b>" in expected[2]["Subject"]


@pytest.mark.parametrize("brace", [False, True])
def test_the_fast_batch_encoding_is_the_documented_message(fake: RunningFakeESP, brace: bool) -> None:
    """``_encode_templated`` splices pre-encoded JSON; each message must parse to ``_templated``."""
    html = "<p>{%%name%%}</p>" if brace else "<p>%%name%%</p>"
    message = make_message(subject="Weekly", html=html, text="Hello %%name%%")
    names = ["Ann", ' "Quoted" \\ Name ', "Tab\there", "Ünïcødé", "", "Line\u2028Sep", "Del\x7f"]
    recipients = [make_recipient(i, name=name) for i, name in enumerate(names)]
    adapter = PostmarkAdapter(token=TOKEN, base_url=fake.url)
    try:
        prepared = adapter._prepare(message)
        assert bool(prepared.extra) is brace
        encoded = adapter._encode_templated(message, recipients)
        expected = [adapter._templated(message, prepared, r) for r in recipients]
    finally:
        adapter.close()
    assert [orjson.loads(item) for item in encoded] == expected
    tos = [e["To"] for e in expected]
    assert tos[:5] == [
        '"Ann" <reader0@example.com>',
        '"\\"Quoted\\" \\\\ Name" <reader1@example.com>',
        '"Tab here" <reader2@example.com>',
        '"Ünïcødé" <reader3@example.com>',
        "reader4@example.com",
    ]
    assert tos[6] == '"Del" <reader6@example.com>'


# -- templates across processes ----------------------------------------------------------------


def test_two_processes_preparing_the_same_send_share_one_template(
    fake: RunningFakeESP, message: Outgoing
) -> None:
    adapters = [PostmarkAdapter(TOKEN, base_url=fake.url) for _ in range(4)]
    errors: list[BaseException] = []

    def prepare(adapter: PostmarkAdapter) -> None:
        try:
            adapter._prepare(message)  # the raising variant, to see any failure
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=prepare, args=(a,)) for a in adapters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(fake.esp.templates) == 1
    for index, adapter in enumerate(adapters):
        (result,) = adapter.send_batch(message, [make_recipient(index)])
        assert result.outcome is Outcome.ACCEPTED
        adapter.close()


def test_an_existing_template_with_other_content_is_updated(fake: RunningFakeESP, message: Outgoing) -> None:
    first = PostmarkAdapter(TOKEN, base_url=fake.url)
    first.prepare(make_message(html="<p>old %%name%%</p>"))
    first.close()
    second = PostmarkAdapter(TOKEN, base_url=fake.url)
    second.prepare(message)
    assert fake.esp.stats["templates_created"] == 1 and fake.esp.stats["templates_updated"] == 1
    (template,) = fake.esp.templates.values()
    assert template.html_body == mustachio(message.html)[0]
    second.close()


def test_a_template_deleted_mid_send_is_made_again(
    fake: RunningFakeESP, message: Outgoing, record_path: Any
) -> None:
    adapter = PostmarkAdapter(TOKEN, base_url=fake.url)
    adapter.prepare(message)
    fake.esp.templates.clear()
    results = adapter.send_batch(message, make_recipients(2))
    assert {r.outcome for r in results} == {Outcome.RETRY}
    assert all("1101" in (r.error or "") for r in results)
    results = adapter.send_batch(message, make_recipients(2))
    assert {r.outcome for r in results} == {Outcome.ACCEPTED}
    assert len(read_record(record_path)) == 2
    adapter.delete_template(message)
    assert fake.esp.templates == {}
    adapter.close()


# -- whole-request faults ----------------------------------------------------------------------


def test_a_limit_raised_by_mistake_still_sends_no_request_over_postmarks(
    adapter: PostmarkAdapter, fake: RunningFakeESP, message: Outgoing
) -> None:
    """Above the limit the adapter refuses (the contract); raised by mistake, it still splits."""
    adapter.max_batch = 501  # no request carries more than 500 (or, with full bodies, 50)
    results = adapter.send_batch(message, make_recipients(501))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 501
    requests = 2 if adapter.mode is Mode.TEMPLATES else 11
    assert fake.esp.stats["send_requests"] == requests and fake.esp.stats["refused_too_many"] == 0


def test_a_full_body_batch_goes_as_requests_of_fifty_and_a_lost_one_is_unknown_alone(
    fake: RunningFakeESP, message: Outgoing, record_path: Any
) -> None:
    """A batch of 120 full bodies is three requests. The second one gets no answer: its 50 are
    unknown, the 20 after it were never sent (retry), the first 50 stay accepted."""
    adapter = PostmarkAdapter(token=TOKEN, base_url=fake.url, templates=False)
    try:
        fake.esp.set_faults(next=["ok", "drop_after"])
        results = adapter.send_batch(message, make_recipients(120))
    finally:
        adapter.close()
    outcomes = [r.outcome for r in results]
    assert outcomes == [Outcome.ACCEPTED] * 50 + [Outcome.UNKNOWN] * 50 + [Outcome.RETRY] * 20
    assert fake.esp.stats["send_requests"] == 2
    assert len(read_record(record_path)) == 100  # the unanswered request was processed


def test_a_batch_the_provider_finds_too_big_stops_the_send(
    adapter: PostmarkAdapter, fake: RunningFakeESP, message: Outgoing, record_path: Any
) -> None:
    """Postmark's limit lower than ours (ErrorCode 410): no recipient's fault, so nobody is failed."""
    fake.esp.set_faults(max_batch=3)
    with pytest.raises(AuthError, match="410"):
        adapter.send_batch(message, make_recipients(5))
    assert read_record(record_path) == [] and fake.esp.stats["refused_too_many"] == 1


# -- per-message answers -----------------------------------------------------------------------


def test_inactive_and_invalid_recipients_fail_alone(
    adapter: PostmarkAdapter, fake: RunningFakeESP, message: Outgoing
) -> None:
    fake.esp.set_faults(inactive=["reader1@example.com"], invalid=["reader3@example.com"])
    results = by_id(adapter.send_batch(message, make_recipients(5)))
    outcomes = {i - 1000: r.outcome for i, r in results.items()}
    assert outcomes == {
        0: Outcome.ACCEPTED,
        1: Outcome.FAILED,
        2: Outcome.ACCEPTED,
        3: Outcome.FAILED,
        4: Outcome.ACCEPTED,
    }
    assert "ErrorCode 406" in (results[1001].error or "") and "inactive" in (results[1001].error or "")
    assert "ErrorCode 300" in (results[1003].error or "")
    assert results[1001].message_id is None and results[1000].message_id


# -- mapping details, against scripted answers -------------------------------------------------


def scripted(handler: Any) -> PostmarkAdapter:
    client = httpx.Client(base_url="https://postmark.test", transport=httpx.MockTransport(handler))
    return PostmarkAdapter(TOKEN, templates=False, client=client)


def test_per_message_codes_map_to_outcomes(message: Outgoing) -> None:
    answers = [
        {"ErrorCode": 0, "Message": "OK", "MessageID": "m0"},
        {"ErrorCode": 429, "Message": "Rate limit exceeded"},
        {"ErrorCode": 100, "Message": "Maintenance"},
        {"ErrorCode": 406, "Message": "Inactive"},
        {"ErrorCode": 412, "Message": "Account pending"},
        {"Nothing": "useful"},
    ]
    adapter = scripted(lambda request: httpx.Response(200, json=answers))
    outcomes = [r.outcome for r in adapter.send_batch(message, make_recipients(6))]
    assert outcomes == [
        Outcome.ACCEPTED,
        Outcome.RETRY,
        Outcome.RETRY,
        Outcome.FAILED,
        Outcome.RETRY,  # the account's problem, not this recipient's
        Outcome.UNKNOWN,
    ]


def test_an_account_problem_with_nothing_accepted_stops_the_send(message: Outgoing) -> None:
    answers = [{"ErrorCode": 401, "Message": "Sender signature not confirmed"}] * 2
    adapter = scripted(lambda request: httpx.Response(200, json=answers))
    with pytest.raises(AuthError, match="401"):
        adapter.send_batch(message, make_recipients(2))


def test_a_422_for_the_account_stops_the_send(message: Outgoing) -> None:
    """Any other 422 fails every recipient (the contract); an unknown stream is ours to fix."""
    stream = {"ErrorCode": 1235, "Message": "The 'MessageStream' provided does not exist"}
    with pytest.raises(AuthError, match="1235"):
        scripted(lambda request: httpx.Response(422, json=stream)).send_batch(message, make_recipients(2))


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx.Response(200, text="<html>gateway</html>"), Outcome.UNKNOWN),
        (httpx.Response(200, json=[{"ErrorCode": 0, "MessageID": "only one"}]), Outcome.UNKNOWN),
    ],
)
def test_an_unreadable_answer_is_unknown(
    message: Outgoing, response: httpx.Response, expected: Outcome
) -> None:
    adapter = scripted(lambda request: response)
    assert [r.outcome for r in adapter.send_batch(message, make_recipients(2))] == [expected] * 2


def test_plain_bodies_split_under_the_size_limit_and_keep_what_was_accepted(
    fake: RunningFakeESP, message: Outgoing, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postmark, "MAX_BATCH_BYTES", 2500)  # about two messages a request
    adapter = PostmarkAdapter(TOKEN, base_url=fake.url, templates=False)
    results = adapter.send_batch(message, make_recipients(6))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 6
    requests = fake.esp.stats["send_requests"]
    assert requests >= 3

    fake.esp.set_faults(next=["ok", "503"])
    results = adapter.send_batch(message, make_recipients(6))
    outcomes = [r.outcome for r in results]
    assert outcomes[0] is Outcome.ACCEPTED and Outcome.RETRY in outcomes
    assert outcomes == sorted(outcomes, key=lambda o: o is Outcome.RETRY)  # accepted first, then retry
    adapter.close()


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
    assert parse_retry_after("30") == 30
    assert parse_retry_after("Fri, 27 Nov 2026 12:00:42 GMT", now=now) == 42
    assert parse_retry_after("Fri, 27 Nov 2026 11:00:00 GMT", now=now) == 0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
