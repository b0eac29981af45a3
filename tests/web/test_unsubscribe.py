"""``/u/TOKEN``: one-click unsubscribe (RFC 8058), the page behind it, and its forms, on both databases."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import update

from newsletter.delivery import runner
from newsletter.errors import ConfigError
from newsletter.store.ledger import ledger_for
from newsletter.store.models import EventKind, Subscriber, SubscriberStatus
from newsletter.store.reports import send_figures
from newsletter.web.unsubscribe import mask
from tests.web.conftest import READERS, Site, make_settings

ONE_CLICK = {"List-Unsubscribe": "One-Click"}
URLENCODED, MULTIPART = "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"


def one_click(site: Site, path: str, multipart: bool = False):  # type: ignore[no-untyped-def]
    if multipart:
        return site.client.post(path, files={"List-Unsubscribe": (None, "One-Click")})
    return site.client.post(path, data=ONE_CLICK)


def state(site: Site) -> tuple[object, ...]:
    """Everything a request could change: each reader's row, and the events."""
    rows = tuple(
        (s.status, s.name, s.unsubscribed_at, tuple(sorted(t.name for t in s.tags))) if s else None
        for s in map(site.subscriber, READERS)
    )
    return rows, tuple((e.kind, e.send_id, str(e.detail)) for e in site.events())


def test_every_unsubscribe_link_of_a_sent_message_opens_a_page_and_one_click_works(site: Site) -> None:
    messages = site.messages()
    assert len(messages) == len(READERS)
    for message in messages:
        header = str(message["List-Unsubscribe"])
        url = header.split("<", 1)[1].split(">", 1)[0]
        assert url.startswith("https://news.example.org/u/") and message["List-Unsubscribe-Post"]
        path = url.removeprefix("https://news.example.org")
        page = site.client.get(path)
        assert page.status_code == 200 and "Unsubscribe" in page.text
        address = str(message["To"]).strip("<>").rpartition("<")[2].rstrip(">")
        assert mask(address) in page.text and address not in page.text
        answer = one_click(site, path)
        assert (answer.status_code, answer.text) == (200, "Unsubscribed.\n")
        found = site.subscriber(address)
        assert found is not None and found.status is SubscriberStatus.UNSUBSCRIBED
    events = site.events()
    assert [(e.kind, e.send_id, e.provider, e.detail["source"]) for e in events] == [
        (EventKind.UNSUBSCRIBED, site.send_id, "web", "one-click")
    ] * len(READERS)
    with site.engine.connect() as conn:
        send = ledger_for(conn).get_send(site.send_id)
        assert send_figures(conn, send, hours=72).events[EventKind.UNSUBSCRIBED].recipients == len(READERS)


@pytest.mark.parametrize("multipart", [False, True], ids=["urlencoded", "multipart"])
def test_one_click_is_immediate_idempotent_and_never_redirects(site: Site, multipart: bool) -> None:
    path = f"/u/{site.token(READERS[0])}"
    first, second = one_click(site, path, multipart), one_click(site, path, multipart)
    assert first.status_code == second.status_code == 200
    assert "location" not in first.headers and "set-cookie" not in first.headers
    assert first.headers["cache-control"] == "no-store"
    assert len(site.events()) == 1  # the second changed nothing
    assert site.subscriber(READERS[0]).status is SubscriberStatus.UNSUBSCRIBED  # type: ignore[union-attr]
    assert site.subscriber(READERS[1]).status is SubscriberStatus.ACTIVE  # type: ignore[union-attr]


def test_a_post_without_the_one_click_field_changes_nothing(site: Site) -> None:
    path = f"/u/{site.token(READERS[0])}"
    before = state(site)
    for data in ({}, {"List-Unsubscribe": "one-click-ish"}, {"unsubscribe": "yes"}):
        assert site.client.post(path, data=data).status_code == 400
    assert state(site) == before


def test_the_doctors_probe_answers_200_and_unsubscribes_nobody(site: Site) -> None:
    before = state(site)
    answer = one_click(site, f"/u/{site.signer.probe_token()}")
    assert answer.status_code == 200 and "location" not in answer.headers
    assert state(site) == before


def test_bad_tampered_unknown_and_forgotten_tokens_get_one_page_that_says_nothing(site: Site) -> None:
    good = site.token(READERS[0])
    forgotten = site.token(READERS[1])
    ada = site.subscriber(READERS[1])
    assert ada is not None
    confirm = site.client.get(f"/u/{forgotten}/forget")
    csrf = site.csrf(confirm.text, f"/u/{forgotten}/forget")
    erased = site.client.post(f"/u/{forgotten}/forget", data={"csrf": csrf, "confirm": "yes"})
    assert erased.status_code == 200
    assert site.subscriber(READERS[1]) is None
    unknown = site.signer.unsubscribe_token(site.send_id, 999_999)
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    bodies = set()
    before = state(site)
    for token in (tampered, unknown, forgotten, "x", "1.2", "a" * 5000, "%00", good.replace(".", "..")):
        page = site.client.get(f"/u/{token}")
        assert page.status_code == 400, token
        assert page.headers["x-robots-tag"].startswith("noindex")
        bodies.add(page.text)
        assert site.client.post(f"/u/{token}", data=ONE_CLICK).status_code in (200, 400)
    assert len(bodies) == 1
    assert state(site) == before  # a forgotten subscriber's link did nothing either


def test_get_and_head_never_change_anything(site: Site) -> None:
    token = site.token(READERS[0])
    before = state(site)
    for path in (f"/u/{token}", f"/u/{token}/forget", f"/u/{token}?List-Unsubscribe=One-Click"):
        assert site.client.get(path).status_code == 200
        assert site.client.head(path).status_code == 200
    for action in ("unsubscribe", "resubscribe", "preferences"):
        assert site.client.get(f"/u/{token}/{action}").status_code == 405
    assert state(site) == before


def test_the_page_unsubscribes_with_a_reason_then_offers_resubscribe(site: Site) -> None:
    token = site.token(READERS[0])
    path = f"/u/{token}"
    page = site.client.get(path)
    assert "<script" not in page.text
    csrf = site.csrf(page.text, f"{path}/unsubscribe")
    note = "Weekly is too often for me"
    left = site.client.post(f"{path}/unsubscribe", data={"csrf": csrf, "reason": "too-many", "note": note})
    assert left.status_code == 303 and left.headers["location"] == path
    assert site.subscriber(READERS[0]).status is SubscriberStatus.UNSUBSCRIBED  # type: ignore[union-attr]
    (event,) = site.events()
    assert event.detail == {"source": "page", "reason": "too-many", "note": note}
    with site.engine.connect() as conn:
        send = ledger_for(conn).get_send(site.send_id)
        leaving = send_figures(conn, send, hours=72).leaving
    assert (leaving.counts, leaving.notes) == ({"too-many": 1}, (note,))

    after = site.client.get(path)
    assert "You are unsubscribed" in after.text and "Resubscribe" in after.text
    csrf = site.csrf(after.text, f"{path}/resubscribe")
    back = site.client.post(f"{path}/resubscribe", data={"csrf": csrf})
    assert back.status_code == 303
    found = site.subscriber(READERS[0])
    assert found is not None and found.status is SubscriberStatus.ACTIVE
    assert found.consent_method == "preferences page"
    assert "Welcome back" in site.client.get(back.headers["location"]).text
    # ... and the same link may unsubscribe again: each act is its own event.
    again = site.client.get(path)
    site.client.post(f"{path}/unsubscribe", data={"csrf": site.csrf(again.text, f"{path}/unsubscribe")})
    assert site.subscriber(READERS[0]).status is SubscriberStatus.UNSUBSCRIBED  # type: ignore[union-attr]
    assert len(site.events()) == 2


def test_resubscribe_closes_after_the_configured_days_and_never_undoes_a_bounce(make_site) -> None:  # type: ignore[no-untyped-def]
    site: Site = make_site(resubscribe_days=3)
    token = site.token(READERS[0])
    one_click(site, f"/u/{token}")
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=4)
    ada, grace = (Subscriber.email == address for address in READERS[:2])
    with site.engine.begin() as conn:
        conn.execute(update(Subscriber).where(ada).values(unsubscribed_at=long_ago))
    page = site.client.get(f"/u/{token}")
    assert "You are unsubscribed" in page.text and "Resubscribe" not in page.text
    with site.engine.begin() as conn:
        conn.execute(update(Subscriber).where(grace).values(status=SubscriberStatus.BOUNCED))
    bounced = site.client.get(f"/u/{site.token(READERS[1])}")
    assert "Resubscribe" not in bounced.text
    # A forged resubscribe (a form of another page) does nothing.
    other = site.client.get(f"/u/{site.token(READERS[2])}")
    csrf = site.csrf(other.text, f"/u/{site.token(READERS[2])}/preferences")
    assert site.client.post(f"/u/{token}/resubscribe", data={"csrf": csrf}).status_code == 400
    assert site.subscriber(READERS[0]).status is SubscriberStatus.UNSUBSCRIBED  # type: ignore[union-attr]


def test_preferences_save_the_name_and_topics_and_keep_other_tags(site: Site) -> None:
    path = f"/u/{site.token(READERS[0])}"
    page = site.client.get(path)
    assert "U.S. Congress" in page.text and "Photos of the week" in page.text
    csrf = site.csrf(page.text, f"{path}/preferences")
    saved = site.client.post(
        f"{path}/preferences",
        data={"csrf": csrf, "name": "  Ada   Lovelace ", "topic:congress": "on", "topic:not-offered": "on"},
    )
    assert saved.status_code == 303
    found = site.subscriber(READERS[0])
    assert found is not None and found.name == "Ada Lovelace"
    assert sorted(t.name for t in found.tags) == ["congress", "keep-me"]
    shown = site.client.get(saved.headers["location"]).text
    assert "Your preferences are saved" in shown and 'value="Ada Lovelace"' in shown
    # Unticking a topic removes it, the editors' own tags stay.
    csrf = site.csrf(shown, f"{path}/preferences")
    site.client.post(f"{path}/preferences", data={"csrf": csrf, "name": ""})
    found = site.subscriber(READERS[0])
    assert found is not None and found.name is None and [t.name for t in found.tags] == ["keep-me"]


def test_forget_me_asks_first_then_erases_as_the_cli_does(site: Site) -> None:
    path = f"/u/{site.token(READERS[0])}"
    confirm = site.client.get(f"{path}/forget")
    assert "cannot be undone" in confirm.text and site.subscriber(READERS[0]) is not None
    csrf = site.csrf(confirm.text, f"{path}/forget")
    assert site.client.post(f"{path}/forget", data={"csrf": csrf}).status_code == 303  # not confirmed
    assert site.subscriber(READERS[0]) is not None
    done = site.client.post(f"{path}/forget", data={"csrf": csrf, "confirm": "yes"})
    assert done.status_code == 200 and "forgotten" in done.text
    assert site.subscriber(READERS[0]) is None
    from newsletter.store.db import session_scope
    from newsletter.store.subscribers import SubscriberRepository

    with session_scope(site.engine) as session:
        assert SubscriberRepository(session).get_suppression(READERS[0]) is not None


@pytest.mark.parametrize(
    "csrf",
    ["", "forged", "1.2.3", None],
    ids=["empty", "forged", "garbage", "missing"],
)
def test_a_form_without_its_signed_field_changes_nothing(site: Site, csrf: str | None) -> None:
    path = f"/u/{site.token(READERS[0])}"
    before = state(site)
    data = {} if csrf is None else {"csrf": csrf}
    for action in ("unsubscribe", "preferences", "forget", "resubscribe"):
        answer = site.client.post(f"{path}/{action}", data={**data, "confirm": "yes", "name": "Mallory"})
        assert answer.status_code == 400, action
    assert state(site) == before


def test_a_signed_field_expires(make_site) -> None:  # type: ignore[no-untyped-def]
    site: Site = make_site(form_max_age=60)
    path = f"/u/{site.token(READERS[0])}"
    csrf = site.csrf(site.client.get(path).text, f"{path}/unsubscribe")
    import time_machine

    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)):
        assert site.client.post(f"{path}/unsubscribe", data={"csrf": csrf}).status_code == 400
    assert site.subscriber(READERS[0]).status is SubscriberStatus.ACTIVE  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"\x00\xff\xfe" * 1000, "application/x-www-form-urlencoded"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40, "multipart/form-data; boundary=x"),
        (b"List-Unsubscribe=One-Click&note=" + b"A" * 1_000_000, "application/x-www-form-urlencoded"),
        (b"name=" + b"%00" * 10, "application/x-www-form-urlencoded"),
        (b"&".join(b"a" + b"[b]" * 500 + b"=%d" % i for i in range(200)), URLENCODED),
        (b"--x\r\nContent-Disposition: form-data; name=f; filename=a\r\n\r\nhi\r\n--x--\r\n", MULTIPART),
        (b"{\"List-Unsubscribe\": \"One-Click\"}", "application/json"),
    ],
    ids=["binary", "binary-multipart", "1MB-field", "nul", "nested-keys", "file", "json"],
)
def test_hostile_bodies_are_refused_never_a_500(site: Site, body: bytes, content_type: str) -> None:
    path = f"/u/{site.token(READERS[0])}"
    before = state(site)
    for target in (path, f"{path}/unsubscribe", f"{path}/preferences"):
        answer = site.client.post(target, content=body, headers={"content-type": content_type})
        assert 400 <= answer.status_code < 500, (target, answer.status_code)
    assert state(site) == before


def test_pages_carry_the_security_and_privacy_headers(site: Site) -> None:
    page = site.client.get(f"/u/{site.token(READERS[0])}")
    headers = page.headers
    assert "script-src" not in headers["content-security-policy"]  # default-src 'none' covers script
    assert "default-src 'none'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "no-referrer"
    assert headers["strict-transport-security"].startswith("max-age=")  # base_url is https
    assert headers["cache-control"] == "no-store" and headers["x-robots-tag"].startswith("noindex")
    # The archive keeps its own policy, not a second one.
    home = site.client.get("/")
    assert len(home.headers.get_list("content-security-policy")) == 1


@pytest.mark.parametrize(
    ("provider", "base_url", "refused"),
    [
        ("postmark", "http://news.example.org", True),
        ("smtp", "http://10.0.0.5:8000", True),
        ("postmark", "https://news.example.org", False),
        ("postmark", "http://127.0.0.1:8000", False),
        ("sendgrid", "http://127.8.9.10", False),
        ("mailgun", "http://localhost:8000", False),
        ("ses", "http://[::1]:8000", False),
        ("outbox", "http://news.example.org", False),
    ],
)
def test_send_refuses_one_click_over_plain_http_but_on_loopback(
    tmp_path, provider: str, base_url: str, refused: bool  # type: ignore[no-untyped-def]
) -> None:
    settings = make_settings("sqlite:///unused.db", tmp_path).model_copy(deep=True)
    settings = settings.model_validate(
        {**settings.model_dump(), "newsletter": {**settings.newsletter.model_dump(), "base_url": base_url},
         "esp": {**settings.esp.model_dump(), "provider": provider}}
    )  # fmt: skip
    if refused:
        with pytest.raises(ConfigError, match=r"newsletter\.base_url"):
            runner.require_https_links(settings)
    else:
        runner.require_https_links(settings)
