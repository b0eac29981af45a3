"""The MIME message each recipient gets, parsed back with the strictest standard-library policy.

Everything a bulk sender must carry is checked on the parsed message, not on our own text:
headers (From, To, Reply-To, Subject, Date, Message-ID, List-Unsubscribe with both forms,
List-Unsubscribe-Post, List-Id), both body parts, non-ASCII names and subjects, HTML escaping of
values, and that a line break can never smuggle a header in.
"""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage

import pytest

from newsletter.delivery.message import MimeTemplate, list_unsubscribe, new_message_id
from newsletter.errors import BadInput
from newsletter.render.slots import html_values
from tests.delivery.conftest import SUBJECT, make_message, make_recipient, make_recipients

MESSAGE_ID = re.compile(r"^<[^<>@\s]+@[^<>@\s]+>$")


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.strict)
    assert isinstance(message, EmailMessage)
    assert not message.defects
    return message


def parts(message: EmailMessage) -> tuple[EmailMessage, EmailMessage]:
    assert message.get_content_type() == "multipart/alternative"
    payload = message.get_payload()
    assert isinstance(payload, list) and len(payload) == 2
    text, html = payload
    assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage)
    assert not text.defects and not html.defects
    return text, html


def test_every_required_header_parses_back() -> None:
    outgoing = make_message()
    recipient = make_recipient(1)  # "Zoë Ünal"
    parsed = parse(MimeTemplate(outgoing).build(recipient))

    sender = parsed["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == ("Wöchentliche Rundschau", "news@example.org")
    to = parsed["To"].addresses[0]
    assert (to.display_name, to.addr_spec) == ("Zoë Ünal", "reader1@example.com")
    assert parsed["Reply-To"].addresses[0].addr_spec == "editors@example.org"
    assert parsed["Subject"] == SUBJECT
    assert parsed["Date"].datetime.tzinfo is not None
    assert MESSAGE_ID.match(parsed["Message-ID"])
    assert parsed["Message-ID"] == recipient.headers["Message-ID"]
    assert parsed["MIME-Version"] == "1.0"

    unsubscribe = parsed["List-Unsubscribe"]
    links = re.findall(r"<([^>]+)>", unsubscribe)
    assert links[0] == recipient.values["unsubscribe_url"] and links[0].startswith("https://")
    assert links[1] == "mailto:unsubscribe@example.org?subject=unsubscribe"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["List-Id"] == "Weekly <weekly.example.org>"


def test_each_header_appears_once() -> None:
    parsed = parse(MimeTemplate(make_message()).build(make_recipient(0)))
    for name in ("From", "To", "Reply-To", "Subject", "Date", "Message-ID", "List-Unsubscribe", "List-Id"):
        assert len(parsed.get_all(name) or []) == 1, name


def test_message_ids_are_unique_and_well_formed() -> None:
    ids = {new_message_id("example.org") for _ in range(2000)}
    assert len(ids) == 2000
    assert all(MESSAGE_ID.match(value) for value in ids)
    template = MimeTemplate(make_message())
    parsed = [parse(template.build(r))["Message-ID"] for r in make_recipients(50)]
    assert len(set(parsed)) == 50


def test_both_parts_are_personal_and_the_html_one_is_escaped() -> None:
    recipient = make_recipient(0)  # <b>Ana</b> & "Bo"
    text, html = parts(parse(MimeTemplate(make_message()).build(recipient)))
    assert text.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
    assert text.get_content_charset() == html.get_content_charset() == "utf-8"

    text_body, html_body = text.get_content(), html.get_content()
    assert 'Hello <b>Ana</b> & "Bo",' in text_body
    assert "Unsubscribe: https://news.example.org/u/0.tok?x=1&y=2" in text_body
    assert "Hello &lt;b&gt;Ana&lt;/b&gt; &amp; &quot;Bo&quot;," in html_body
    assert "<b>Ana</b>" not in html_body
    assert 'href="https://news.example.org/u/0.tok?x=1&amp;y=2"' in html_body
    assert "(sent to reader0@example.com)" in html_body
    assert "%%" not in text_body + html_body


def test_values_are_filled_once_never_expanded_again() -> None:
    recipient = make_recipient(3, name="%%email%% %%unsubscribe_url%%")
    text, _ = parts(parse(MimeTemplate(make_message()).build(recipient)))
    assert "Hello %%email%% %%unsubscribe_url%%," in text.get_content()
    assert html_values({"n": "<%%x%%>"}) == {"n": "&lt;%%x%%&gt;"}


@pytest.mark.parametrize("name", ["Zoë Ünal", "Smith, John", '"Quoted" O\'Brien', "李小龙", "", "Ana"])
def test_display_names_round_trip(name: str) -> None:
    parsed = parse(MimeTemplate(make_message()).build(make_recipient(2, name=name)))
    address = parsed["To"].addresses
    assert len(address) == 1
    assert address[0].addr_spec == "reader2@example.com"
    assert address[0].display_name == name


def test_the_bytes_are_seven_bit_with_short_crlf_lines() -> None:
    long_line = "<p>" + "word " * 4000 + "</p>"
    outgoing = make_message(html=long_line + "%%name%%", subject="Ünïcödé " * 30)
    data = MimeTemplate(outgoing).build(make_recipient(1))
    data.decode("ascii")  # raises if not 7-bit
    lines = data.split(b"\r\n")
    assert max(len(line) for line in lines) <= 998
    assert b"\n" not in data.replace(b"\r\n", b"")
    parsed = parse(data)
    assert parsed["Subject"] == ("Ünïcödé " * 30).strip() or parsed["Subject"] == "Ünïcödé " * 30
    assert parts(parsed)[1].get_content().startswith(long_line)


def test_line_breaks_in_header_values_are_refused() -> None:
    with pytest.raises(ValueError, match="line break"):
        MimeTemplate(make_message(subject="Hi\r\nBcc: victim@example.com"))
    with pytest.raises(ValueError, match="line break"):
        MimeTemplate(make_message(reply_to="a@example.org\nBcc: victim@example.com"))
    with pytest.raises(ValueError, match="line break"):
        MimeTemplate(make_message(headers={"List-Id": "x\r\nBcc: victim@example.com"}))

    template = MimeTemplate(make_message())
    forged = make_recipient(1)
    forged = type(forged)(
        forged.delivery_id,
        forged.email,
        forged.name,
        forged.values,
        {**forged.headers, "List-Unsubscribe": "<https://x>\r\nBcc: victim@example.com"},
    )
    with pytest.raises(ValueError, match="line break"):
        template.build(forged)
    with pytest.raises(ValueError, match="line break"):
        template.build(make_recipient(1, name="Eve\r\nBcc: victim@example.com"))


def test_a_non_ascii_name_with_a_line_break_never_forges_a_header() -> None:
    """Refused, or sent to the bare address: either way no second header comes out of it."""
    template = MimeTemplate(make_message())
    try:
        data = template.build(make_recipient(1, name="Ève\nBcc: victim@example.com"))
    except ValueError:
        return
    parsed = parse(data)
    assert parsed["Bcc"] is None
    assert [a.addr_spec for a in parsed["To"].addresses] == ["reader1@example.com"]


def test_list_unsubscribe_value() -> None:
    value = list_unsubscribe("https://n.example.org/u/abc", "leave@example.org")
    assert value == "<https://n.example.org/u/abc>, <mailto:leave@example.org?subject=unsubscribe>"


@pytest.mark.parametrize("key_length", [0, 1, 32, 63, 64, 65, 500])
def test_the_prepared_hmac_is_rfc_2104_hmac_sha256_for_every_key_length(key_length: int) -> None:
    import hashlib
    import hmac

    from newsletter.delivery.tokens import _PreparedHmac

    key = bytes((i * 37 + 11) % 256 for i in range(key_length))
    prepared = _PreparedHmac(key)
    for message in (b"", b"7.42", bytes(range(256)) * 40):
        assert prepared.digest(message) == hmac.new(key, message, hashlib.sha256).digest()


def test_unsubscribe_tokens_are_itsdangerous_tokens_and_cannot_be_forged() -> None:
    from newsletter.delivery.tokens import BadToken, TokenSigner

    signer = TokenSigner("a-secret-key-of-some-length")
    for send_id, subscriber_id in ((1, 2), (0, 0), (123_456, 99_999_999)):
        token = signer.unsubscribe_token(send_id, subscriber_id)
        assert token == signer.reference_token(send_id, subscriber_id)  # the fast path is Signer.sign
        assert signer.read_unsubscribe_token(token) == (send_id, subscriber_id)
    token = signer.unsubscribe_token(7, 42)
    for forged in (
        token.replace("7.42.", "7.43.", 1),  # someone else's id, same signature
        token[:-1] + ("A" if token[-1] != "A" else "B"),  # an altered signature
        TokenSigner("another-secret-key-entirely").unsubscribe_token(7, 42),
        "7.42",
        "",
        "\x00" * 50,
    ):
        with pytest.raises(BadToken):
            signer.read_unsubscribe_token(forged)
    with pytest.raises(BadInput):
        TokenSigner("short")
