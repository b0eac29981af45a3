"""Double opt-in over HTTP (``newsletter/web/signup.py``), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import time_machine
from sqlalchemy import func, select

from newsletter.store.db import session_scope
from newsletter.store.models import Subscriber, SubscriberStatus, SuppressionReason
from newsletter.store.subscribers import SubscriberRepository
from tests.signup.conftest import Signup, link, text_of

ADDRESS = "Reader.One@Example.org"


def test_subscribe_form_is_accessible_and_scriptless(signup: Signup) -> None:
    page = signup.client.get("/subscribe")
    assert page.status_code == 200
    body = page.text
    assert '<html lang="en">' in body
    assert '<label for="email">' in body and 'id="email"' in body
    assert "<h1>" in body and 'value="press"' in body and "Press releases" in body
    assert '<script async type="module" src="/static/altcha.min.js"></script>' in body
    assert body.count("<script") == 1  # the widget, from our origin; no inline script
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert signup.client.get("/static/signup.css").status_code == 200


def test_flow_subscribe_confirm_records_consent(signup: Signup) -> None:
    answer = signup.post(email=ADDRESS, name="Spam Text <b>buy</b>", topics=["press"])
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    pending = signup.subscriber(ADDRESS)
    assert pending is not None and pending.status is SubscriberStatus.PENDING
    assert pending.name == "Spam Text <b>buy</b>" and [t.name for t in pending.tags] == ["press"]
    [message] = signup.messages()
    assert message["To"] == ADDRESS
    assert "List-Unsubscribe-Post" not in message and "List-Unsubscribe" not in message
    raw = message.as_string()
    assert "Spam Text" not in raw and "buy" not in text_of(message)
    confirm = link(message, r"/confirm/[A-Za-z0-9._-]+(?!/cancel)\b")
    page = signup.client.get(confirm)
    assert page.status_code == 200 and "<button" in page.text and f'action="{confirm}"' in page.text
    assert signup.subscriber(ADDRESS).status is SubscriberStatus.PENDING  # type: ignore[union-attr]
    done = signup.client.post(confirm, headers={"user-agent": "TestBrowser/1.0"})
    assert done.status_code == 200 and "You are subscribed" in done.text
    active = signup.subscriber(ADDRESS)
    assert active is not None and active.status is SubscriberStatus.ACTIVE
    assert active.consent_method == "double opt-in" and active.consent_at is not None
    assert active.consent_ip == "testclient" and active.consent_user_agent == "TestBrowser/1.0"
    assert active.consent_text == "signup-1" and active.consent_form_url == "https://news.example.org/subscribe"
    assert active.confirm_nonce is None
    again = signup.client.post(confirm)  # works once
    assert again.status_code == 400 and "used already" in again.text
    assert signup.client.get(confirm).status_code == 400


def _confirm_path(signup: Signup) -> str:
    return link(signup.messages()[-1], r"/confirm/[A-Za-z0-9._-]+")


def test_expired_tampered_and_cancelled_tokens(make_signup: Callable[..., Signup]) -> None:
    signup = make_signup(confirm_hours=2)
    with time_machine.travel(dt.datetime.now(dt.UTC), tick=False) as clock:
        signup.post(email=ADDRESS)
        confirm = _confirm_path(signup)
        clock.shift(dt.timedelta(hours=2, minutes=1))
        expired = signup.client.post(confirm)
        assert expired.status_code == 400 and "expired" in expired.text
        assert signup.subscriber(ADDRESS).status is SubscriberStatus.PENDING  # type: ignore[union-attr]
    tampered = confirm[:-3] + ("AAA" if not confirm.endswith("AAA") else "BBB")
    assert signup.client.post(tampered).status_code == 400
    assert signup.client.get("/confirm/" + "x" * 5000).status_code == 400
    assert signup.client.post("/confirm/1.2.3").status_code == 400


def test_this_was_not_me_deletes_the_pending_row(signup: Signup) -> None:
    signup.post(email=ADDRESS)
    cancel = link(signup.messages()[-1], r"/confirm/[A-Za-z0-9._-]+/cancel")
    page = signup.client.get(cancel)
    assert page.status_code == 200 and signup.subscriber(ADDRESS) is not None
    done = signup.client.post(cancel)
    assert done.status_code == 200 and signup.subscriber(ADDRESS) is None
    confirm = cancel.removesuffix("/cancel")
    assert signup.client.post(confirm).status_code == 400
    assert signup.subscriber(ADDRESS) is None


def _seed(signup: Signup) -> None:
    with session_scope(signup.engine) as session:
        repo = SubscriberRepository(session)
        repo.add("active@example.org")
        repo.add("gone@example.org")
        repo.unsubscribe("gone@example.org")
        repo.add("bounced@example.org")
        repo.leave("bounced@example.org", SubscriberStatus.BOUNCED)
        repo.add("complained@example.org")
        repo.leave("complained@example.org", SubscriberStatus.COMPLAINED)
        repo.add("pending@example.org", status=SubscriberStatus.PENDING)
        repo.forget("forgotten@example.org")
        repo.suppress("manual@example.org", SuppressionReason.MANUAL)


def test_identical_answers_whoever_the_address_is(make_signup: Callable[..., Signup]) -> None:
    signup = make_signup(limit_per_ip="100 per hour")
    _seed(signup)
    answers = []
    for address in ["new@example.org", "pending@example.org", "active@example.org", "gone@example.org",
                    "bounced@example.org", "complained@example.org", "forgotten@example.org",
                    "manual@example.org"]:
        answer = signup.post(email=address)
        answers.append((answer.status_code, answer.content, sorted(answer.headers.items())))
    assert all(a == answers[0] for a in answers), answers
    assert answers[0][0] == 200
    mailed = sorted(str(m["To"]) for m in signup.messages())
    # the new, the pending and the unsubscribed get a confirmation; active and suppressed nothing
    assert mailed == ["gone@example.org", "new@example.org", "pending@example.org"]
    with session_scope(signup.engine, read_only=True) as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 6  # five seeded rows and "new"


def test_unsubscribed_rejoins_only_by_confirming(signup: Signup) -> None:
    _seed(signup)
    signup.post(email="gone@example.org")
    gone = signup.subscriber("gone@example.org")
    assert gone is not None and gone.status is SubscriberStatus.UNSUBSCRIBED
    with session_scope(signup.engine, read_only=True) as session:
        assert SubscriberRepository(session).get_suppression("gone@example.org") is not None
    assert signup.client.post(_confirm_path(signup)).status_code == 200
    back = signup.subscriber("gone@example.org")
    assert back is not None and back.status is SubscriberStatus.ACTIVE
    with session_scope(signup.engine, read_only=True) as session:
        assert SubscriberRepository(session).get_suppression("gone@example.org") is None


def test_honeypot_gets_the_same_answer_and_no_mail(signup: Signup) -> None:
    normal = signup.post(email="a@example.org")
    trapped = signup.post(email="b@example.org", website="http://spam.example")
    assert (trapped.status_code, trapped.content) == (normal.status_code, normal.content)
    assert [str(m["To"]) for m in signup.messages()] == ["a@example.org"]
    assert signup.subscriber("b@example.org") is None


def test_altcha_forged_replayed_and_missing(signup: Signup) -> None:
    import base64
    import json

    missing = signup.client.post("/subscribe", data={"email": "a@example.org"})
    assert missing.status_code == 400 and "anti-robot" in missing.text
    solved = signup.solution()
    body = json.loads(base64.b64decode(solved))
    body["solution"]["counter"] += 1
    body["solution"]["derivedKey"] = "00" * 32
    forged = base64.b64encode(json.dumps(body).encode()).decode()
    assert signup.post(email="a@example.org", altcha_payload=forged).status_code == 400
    assert signup.post(email="a@example.org", altcha_payload="bm90IGpzb24=").status_code == 400
    assert signup.post(email="a@example.org", altcha_payload="%%%").status_code == 400
    # a challenge signed with another key
    from newsletter.web.signup import SignupSite

    other = SignupSite(signup.settings, signup.engine, {"NEWSLETTER_ALTCHA_KEY": "another key entirely"})
    import altcha

    foreign = altcha.Challenge.from_dict(other.challenge())
    payload = altcha.Payload(foreign, altcha.solve_challenge(foreign)).to_base64()  # type: ignore[arg-type]
    assert signup.post(email="a@example.org", altcha_payload=payload).status_code == 400
    assert signup.messages() == []
    assert signup.post(email="a@example.org", altcha_payload=solved).status_code == 200
    replay = signup.post(email="b@example.org", altcha_payload=solved)
    assert replay.status_code == 400 and "used before" in replay.text
    assert [str(m["To"]) for m in signup.messages()] == ["a@example.org"]


def test_rate_limits(make_signup: Callable[..., Signup]) -> None:
    signup = make_signup(limit_per_ip="6 per hour", limit_per_domain="3 per hour")
    # The database's windows are fixed to the clock (store/ratelimits.py): start at the top of an
    # hour, so the 11 minutes below stay inside one hour's and one day's window whenever this runs.
    start = dt.datetime.now(dt.UTC).replace(hour=9, minute=0, second=5, microsecond=0)
    with time_machine.travel(start, tick=False) as clock:
        for _ in range(2):
            assert signup.post(email=ADDRESS).status_code == 200
        assert len(signup.messages()) == 1  # one confirmation per 10 minutes
        clock.shift(dt.timedelta(minutes=11))
        assert signup.post(email=ADDRESS).status_code == 200
        assert len(signup.messages()) == 2
        assert signup.post(email="second@example.org").status_code == 200
        assert signup.post(email="third@example.org").status_code == 200  # the domain's fourth
        assert len(signup.messages()) == 3
        assert signup.post(email="x@other.example").status_code == 200  # sixth from this IP
        assert len(signup.messages()) == 4
        limited = signup.post(email="y@other.example")
        assert limited.status_code == 429 and "too many requests" in limited.text
        assert len(signup.messages()) == 4


def test_per_day_limit_of_one_address(make_signup: Callable[..., Signup]) -> None:
    signup = make_signup(limit_per_ip="100 per hour")
    # Five posts 11 minutes apart inside one day: from 9:00, not from now, which after 23:05 UTC
    # crossed midnight into a fresh day's allowance.
    morning = dt.datetime.now(dt.UTC).replace(hour=9, minute=0, second=0, microsecond=0)
    with time_machine.travel(morning, tick=False) as clock:
        for _ in range(5):
            assert signup.post(email=ADDRESS).status_code == 200
            clock.shift(dt.timedelta(minutes=11))
    assert len(signup.messages()) == 3


def test_manage_mails_the_preferences_link_with_the_same_answer(make_signup: Callable[..., Signup]) -> None:
    signup = make_signup(limit_per_ip="100 per hour")
    _seed(signup)
    assert "Enter your address" in signup.client.get("/manage").text
    answers = set()
    for address in ["active@example.org", "nobody@example.org", "pending@example.org",
                    "bounced@example.org", "forgotten@example.org", "gone@example.org"]:
        answer = signup.post("/manage", email=address)
        answers.add((answer.status_code, answer.content))
    assert len(answers) == 1 and next(iter(answers))[0] == 200
    messages = signup.messages()
    assert sorted(str(m["To"]) for m in messages) == ["active@example.org", "gone@example.org"]
    active = signup.subscriber("active@example.org")
    assert active is not None
    from newsletter.delivery.runner import secret_key
    from newsletter.delivery.tokens import TokenSigner

    token = TokenSigner(secret_key(signup.settings)).unsubscribe_token(0, active.id)
    mine = next(m for m in messages if m["To"] == "active@example.org")
    assert f"https://news.example.org/u/{token}" in text_of(mine)
    assert "List-Unsubscribe-Post" not in mine


def test_bad_input_is_a_clear_4xx(signup: Signup) -> None:
    assert signup.post(email="not an address").status_code == 400
    assert signup.post(email="a@example.org", topics=["nonsense"]).status_code == 400
    assert signup.post(email="a@example.org", name="x" * 201).status_code == 400
    assert signup.messages() == []
