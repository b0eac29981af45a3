"""The fake Postmark itself, spoken to with a bare httpx client: its API shapes and every fault.

The adapter tests rely on the fake behaving like Postmark where it matters and misbehaving
exactly when told; these tests pin both down without the adapter in between.
"""

from __future__ import annotations

import gc
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from newsletter.cli.dev import dev_app
from newsletter.devtools.fake_esp import (
    FakeESP,
    Faults,
    RunningFakeESP,
    compile_mustachio,
    render_mustachio,
    running,
)
from newsletter.devtools.fake_esp.addresses import ONE_ADDRESS, ONE_MAILBOX, first_address
from tests.delivery.conftest import TOKEN, read_record


def plain(to: str, **extra: Any) -> dict[str, Any]:
    return {
        "From": "news@example.org",
        "To": to,
        "Subject": "Hi",
        "HtmlBody": "<p>Hi</p>",
        "TextBody": "Hi",
        "MessageStream": "broadcast",
        **extra,
    }


@pytest.fixture
def client(fake: RunningFakeESP) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, headers={"X-Postmark-Server-Token": TOKEN}, timeout=5) as c:
        yield c


def test_wrong_or_missing_token_is_401_error_code_10(fake: RunningFakeESP) -> None:
    for headers in ({}, {"X-Postmark-Server-Token": "nope"}):
        response = httpx.post(f"{fake.url}/email/batch", json=[plain("a@example.com")], headers=headers)
        assert response.status_code == 401
        assert response.json()["ErrorCode"] == 10
    response = httpx.get(f"{fake.url}/templates/x", headers={"X-Postmark-Server-Token": "nope"})
    assert response.status_code == 401


def test_batch_answers_in_order_and_records_each_accepted_message(
    client: httpx.Client, record_path: Path
) -> None:
    headers = [{"Name": "List-Id", "Value": "Weekly <weekly.example.org>"}]
    batch = [plain(f'"Reader {i}" <r{i}@example.com>', Headers=headers) for i in range(3)]
    response = client.post("/email/batch", json=batch)
    assert response.status_code == 200
    answers = response.json()
    assert [a["ErrorCode"] for a in answers] == [0, 0, 0]
    assert [a["To"] for a in answers] == [m["To"] for m in batch]
    assert all(uuid.UUID(a["MessageID"]) for a in answers)

    record = read_record(record_path)
    assert [r["recipient"] for r in record] == ["r0@example.com", "r1@example.com", "r2@example.com"]
    assert [r["message_id"] for r in record] == [a["MessageID"] for a in answers]
    first = record[0]
    assert first["provider"] == "postmark" and first["subject"] == "Hi" and first["text"] == "Hi"
    assert first["headers"] == {"List-Id": "Weekly <weekly.example.org>"}
    assert first["html_size"] == len("<p>Hi</p>") and len(first["html_sha256"]) == 64


def test_more_than_500_messages_are_refused_whole(client: httpx.Client, record_path: Path) -> None:
    response = client.post("/email/batch", json=[plain(f"r{i}@example.com") for i in range(501)])
    assert response.status_code == 422
    assert response.json()["ErrorCode"] == 410
    assert read_record(record_path) == []
    assert (
        client.post("/email/batch", json=[plain(f"r{i}@example.com") for i in range(500)]).status_code == 200
    )
    messages = [{"To": "a@example.com", "From": "n@example.org", "TemplateAlias": "t"}] * 501
    assert client.post("/email/batchWithTemplates", json={"Messages": messages}).status_code == 422


def test_templates_create_get_update_delete(client: httpx.Client) -> None:
    body = {"Name": "T", "Alias": "newsletter-abc", "Subject": "S {{name}}", "HtmlBody": "<p>{{name}}</p>"}
    created = client.post("/templates", json=body)
    assert created.status_code == 200
    template_id = created.json()["TemplateId"]
    assert created.json()["Alias"] == "newsletter-abc" and created.json()["Active"] is True

    again = client.post("/templates", json=body)
    assert again.status_code == 422 and again.json()["ErrorCode"] == 1122

    by_alias = client.get("/templates/newsletter-abc").json()
    assert by_alias == client.get(f"/templates/{template_id}").json()
    assert by_alias["HtmlBody"] == "<p>{{name}}</p>" and by_alias["TemplateId"] == template_id

    assert client.put("/templates/newsletter-abc", json={"HtmlBody": "<b>{{name}}</b>"}).status_code == 200
    assert client.get("/templates/newsletter-abc").json()["HtmlBody"] == "<b>{{name}}</b>"
    assert client.get("/templates").json()["TotalCount"] == 1

    assert client.delete(f"/templates/{template_id}").status_code == 200
    missing = client.get("/templates/newsletter-abc")
    assert missing.status_code == 422 and missing.json()["ErrorCode"] == 1101


def test_batch_with_templates_renders_like_mustachio(client: httpx.Client, record_path: Path) -> None:
    client.post(
        "/templates",
        json={
            "Name": "T",
            "Alias": "t1",
            "Subject": "For {{name}}",
            "HtmlBody": "<p>{{name}} {{{name}}} {{user.city}} {{missing}}</p>{{#each x}}{{/each}}",
            "TextBody": "Hi {{name}}",
        },
    )
    model = {"name": "<b>Ana</b> & Bo", "user": {"city": "Köln"}}
    messages = [
        {"From": "n@example.org", "To": "a@example.com", "TemplateAlias": "t1", "TemplateModel": model},
        {"From": "n@example.org", "To": "b@example.com", "TemplateAlias": "gone", "TemplateModel": {}},
    ]
    answers = client.post("/email/batchWithTemplates", json={"Messages": messages}).json()
    assert [a["ErrorCode"] for a in answers] == [0, 1101]
    (entry,) = read_record(record_path)
    assert entry["subject"] == "For <b>Ana</b> & Bo"
    assert entry["html"] == "<p>&lt;b&gt;Ana&lt;/b&gt; &amp; Bo <b>Ana</b> & Bo Köln </p>"
    assert entry["text"] == "Hi <b>Ana</b> & Bo"
    assert entry["template"] == "t1"


def test_mustachio_compiles_once_and_ignores_sections() -> None:
    parts = compile_mustachio("a {{ x }} b {{{y}}} {{^z}}c{{/z}} {{&w}}")
    assert render_mustachio(parts, {"x": "<", "y": "<", "w": "<"}, escape=True) == "a &lt; b < c <"
    assert render_mustachio(parts, {"x": 1}, escape=False) == "a 1 b  c "


def test_inactive_and_invalid_recipients_fail_alone_inside_a_200(
    client: httpx.Client, record_path: Path
) -> None:
    client.post("/_faults", json={"inactive": ["gone@example.com"], "invalid": ["Bad@Example.com"]})
    batch = [plain("ok@example.com"), plain("gone@example.com"), plain("bad@example.com"), plain("no-at")]
    response = client.post("/email/batch", json=batch)
    assert response.status_code == 200
    codes = [a["ErrorCode"] for a in response.json()]
    assert codes == [0, 406, 300, 300]
    assert "inactive" in response.json()[1]["Message"]
    assert [r["recipient"] for r in read_record(record_path)] == ["ok@example.com"]


def test_scripted_faults_come_in_order_then_normal_answers(
    client: httpx.Client, fake: RunningFakeESP
) -> None:
    fake.esp.set_faults(next=["429", "503", "500", "401"], retry_after=7)
    statuses = []
    for _ in range(5):
        response = client.post("/email/batch", json=[plain("a@example.com")])
        statuses.append(response.status_code)
        if response.status_code in (429, 503):
            assert response.headers["Retry-After"] == "7"
    assert statuses == [429, 503, 500, 401, 200]
    stats = client.get("/_stats").json()
    assert stats["fault_429"] == stats["fault_503"] == stats["fault_500"] == 1
    assert stats["send_requests"] == 5 and stats["accepted"] == 1


def test_faults_leave_template_calls_alone(client: httpx.Client, fake: RunningFakeESP) -> None:
    fake.esp.set_faults(next=["503"])
    assert client.post("/templates", json={"Name": "T", "Alias": "a", "Subject": "S"}).status_code == 200
    assert client.post("/email/batch", json=[plain("a@example.com")]).status_code == 503


def test_rates_are_seeded_and_reproducible(record_path: Path) -> None:
    def sequence() -> list[int]:
        faults = Faults(rate_429=0.2, rate_503=0.2, rate_500=0.1, seed=42)
        with (
            running(FakeESP(token=TOKEN, faults=faults)) as server,
            httpx.Client(base_url=server.url, headers={"X-Postmark-Server-Token": TOKEN}) as c,
        ):
            return [c.post("/email/batch", json=[plain("a@example.com")]).status_code for _ in range(40)]

    first = sequence()
    assert first == sequence()
    assert {200, 429, 500, 503} <= set(first)
    assert 8 <= first.count(200) <= 32


def test_a_dropped_connection_gives_no_answer_at_all(
    client: httpx.Client, fake: RunningFakeESP, record_path: Path
) -> None:
    fake.esp.set_faults(next=["drop"])
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        client.post("/email/batch", json=[plain(f"r{i}@example.com") for i in range(500)])
    assert read_record(record_path) == []  # dropped before processing
    assert client.post("/email/batch", json=[plain("a@example.com")]).status_code == 200  # next is fine

    fake.esp.set_faults(next=["drop_after"])
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/email/batch", json=[plain("late@example.com")])
    assert [r["recipient"] for r in read_record(record_path)] == ["a@example.com", "late@example.com"]


def test_a_slow_answer_outlasts_the_client_timeout_but_was_processed(
    fake: RunningFakeESP, record_path: Path
) -> None:
    fake.esp.set_faults(next=["slow"], slow_seconds=1.5)
    with httpx.Client(base_url=fake.url, headers={"X-Postmark-Server-Token": TOKEN}, timeout=0.3) as c:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            c.post("/email/batch", json=[plain("a@example.com")])
        assert time.monotonic() - started < 1.0
    assert [r["recipient"] for r in read_record(record_path)] == ["a@example.com"]


def test_delay_applies_to_every_send(client: httpx.Client, fake: RunningFakeESP) -> None:
    fake.esp.set_faults(delay=0.3)
    started = time.monotonic()
    assert client.post("/email/batch", json=[plain("a@example.com")]).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_unauthorized_fault_refuses_everything(client: httpx.Client) -> None:
    client.post("/_faults", json={"unauthorized": True})
    assert client.post("/email/batch", json=[plain("a@example.com")]).status_code == 401
    assert client.post("/templates", json={"Name": "T", "Subject": "S"}).status_code == 401


def test_control_endpoints(client: httpx.Client) -> None:
    changed = client.post("/_faults", json={"rate_503": 0.5, "next": ["ok"]}).json()
    assert changed["rate_503"] == 0.5 and changed["next"] == ["ok"]
    assert client.get("/_faults").json() == changed
    assert client.post("/_faults", json={"rate_503": 2}).status_code == 400
    assert client.post("/_faults", json={"next": ["explode"]}).status_code == 400
    assert client.post("/_faults", json={"colour": "red"}).status_code == 400
    client.post("/email/batch", json=[])
    assert client.get("/_stats").json()["requests"] >= 1
    reset = client.post("/_reset").json()
    assert reset["rate_503"] == 0 and reset["next"] == []
    assert client.get("/_stats").json().get("requests", 0) == 0


def test_recording_can_leave_bodies_out(tmp_path: Path) -> None:
    path = tmp_path / "small.jsonl"
    with running(FakeESP(token=TOKEN, record=path, record_bodies="none")) as server:
        response = httpx.post(
            f"{server.url}/email/batch",
            json=[plain("a@example.com")],
            headers={"X-Postmark-Server-Token": TOKEN},
        )
        assert response.status_code == 200
    (entry,) = read_record(path)
    assert "text" not in entry and "html" not in entry and entry["html_sha256"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_cli_help_lists_the_fault_options() -> None:
    result = CliRunner().invoke(dev_app, ["fake-esp", "--help"])
    assert result.exit_code == 0
    for option in ("--port", "--record", "--token", "--fail-rate", "--delay", "--drop-rate"):
        assert option in result.output


def test_cli_serves_a_fake_esp_until_stopped(tmp_path: Path) -> None:
    port, record = _free_port(), tmp_path / "cli.jsonl"
    code = "from newsletter.cli.dev import dev_app; dev_app()"
    args = ["fake-esp", "--port", str(port), "--record", str(record), "--token", "T", "--fail-rate", "0"]
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.post(
                    f"http://127.0.0.1:{port}/email/batch",
                    json=[plain("cli@example.com")],
                    headers={"X-Postmark-Server-Token": "T"},
                )
                break
            except httpx.ConnectError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "the fake ESP did not start"
                time.sleep(0.1)
        assert response.status_code == 200
    finally:
        process.terminate()
        process.communicate(timeout=10)
    assert [json.loads(line)["recipient"] for line in record.read_text().splitlines()] == ["cli@example.com"]


# -- the sending path without HTTP or a record: what the benchmarks exercise ------------------------


def templated(to: Any = "a@example.com", **extra: Any) -> dict[str, Any]:
    return {"From": "n@example.org", "To": to, "TemplateAlias": "t", "TemplateModel": {}, **extra}


def answer(esp: FakeESP, endpoint: str, body: Any) -> tuple[int, Any]:
    status, data = esp.answer(endpoint, json.dumps(body).encode())
    return status, json.loads(data)


def test_without_a_record_every_check_postmark_makes_still_applies() -> None:
    esp = FakeESP(token=TOKEN)
    template_id = esp.create_template({"Name": "T", "Alias": "t", "Subject": "S"}).template_id
    messages = [
        templated('"Reader, 1" <r1@example.com>'),
        "not an object",
        templated("Reader <no-at-sign>"),
        templated(None),
        {**templated(), "From": ""},
        templated(TemplateAlias="gone"),
        templated(TemplateAlias=["t"]),  # not a name: names no template, no crash
        templated(TemplateAlias=None, TemplateId=template_id),
        templated("a@example.com, b@example.com"),  # the general parser's case
        templated("a@example.com, no-at-sign"),
    ]
    status, answers = answer(esp, "batchWithTemplates", {"Messages": messages})
    assert status == 200
    assert [a["ErrorCode"] for a in answers] == [0, 402, 300, 300, 300, 1101, 1101, 0, 0, 300]
    assert answers[0]["To"] == '"Reader, 1" <r1@example.com>'
    assert esp.stats["messages"] == 10 and esp.stats["accepted"] == 3
    assert esp.stats["error_300"] == 4 and esp.stats["error_1101"] == 2 and esp.stats["error_402"] == 1


def test_message_ids_are_uuid_shaped_and_never_repeat() -> None:
    esp = FakeESP(token=TOKEN, faults=Faults(max_batch=700))
    seen: list[str] = []
    for size in (3, 700, 1):
        status, answers = answer(esp, "batch", [plain(f"r{i}@example.com") for i in range(size)])
        assert status == 200
        seen += [a["MessageID"] for a in answers]
    assert len(set(seen)) == len(seen) == 704
    assert all(str(uuid.UUID(message_id)) == message_id for message_id in seen)


def test_refusals_of_the_whole_body() -> None:
    esp = FakeESP(token=TOKEN)
    assert answer(esp, "batch", {"Messages": []})[1]["ErrorCode"] == 402
    assert answer(esp, "batchWithTemplates", [])[1]["ErrorCode"] == 403
    assert esp.answer("batch", b"[")[0] == 422
    assert esp.answer("batch", b"\xff")[0] == 422
    status, body = answer(esp, "batch", [plain("a@example.com")] * 501)
    assert status == 422 and body["ErrorCode"] == 410 and esp.stats["refused_too_many"] == 1


def test_inactive_and_invalid_apply_without_a_record_too() -> None:
    esp = FakeESP(token=TOKEN, faults=Faults(inactive=["Gone@Example.com"], invalid=["bad@example.com"]))
    batch = [plain('"Gone" <gone@example.com>'), plain("BAD@example.com"), plain("ok@example.com")]
    status, answers = answer(esp, "batch", batch)
    assert status == 200 and [a["ErrorCode"] for a in answers] == [406, 300, 0]
    assert "gone@example.com" in answers[0]["Message"]


_TO_CHARACTERS = ' "\\<>,@.ab\t\u00e9\u2003;:()'


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=_TO_CHARACTERS, max_size=16))
def test_the_quick_mailbox_check_agrees_with_the_address_parser(to: str) -> None:
    """``ONE_MAILBOX`` only ever says yes where the full parse finds an address with an ``@``, and
    says yes to every single mailbox ``ONE_ADDRESS`` finds with one: skipping the parse is safe."""
    quick = ONE_MAILBOX.fullmatch(to) is not None
    if quick:
        assert first_address(to) is not None
    match = ONE_ADDRESS.fullmatch(to)
    if match is not None:
        assert quick == ("@" in (match.group(1) or match.group(2)))


def test_get_on_a_sending_path_is_405(client: httpx.Client) -> None:
    response = client.get("/email/batch")
    assert response.status_code == 405 and response.headers["Allow"] == "POST"


def test_the_collector_is_back_as_it_was_after_a_batch(client: httpx.Client) -> None:
    assert gc.isenabled()
    assert client.post("/email/batch", json=[plain("a@example.com")]).status_code == 200
    assert gc.isenabled()
    gc.disable()
    try:
        assert client.post("/email/batch", json=[plain("a@example.com")]).status_code == 200
        assert not gc.isenabled()  # a process that keeps it off keeps it off
    finally:
        gc.enable()
