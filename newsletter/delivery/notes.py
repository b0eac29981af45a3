"""Transactional messages, through the configured provider and outside the ledger.

The scheduler tells the editors when a scheduled send does not go out (a missing or failing issue
file, a missed time): the people who can fix it hear of it by email as well as in the worker's log.
The web sign-up mails its confirmation links the same way (:func:`send_transactional`). Each is one
small message that takes the provider's ordinary path (the same MIME and adapter code as a send)
with no unsubscribe machinery: there is no list to leave.
"""

from __future__ import annotations

import hashlib
import html
import secrets
from collections.abc import Sequence

from newsletter.config import Settings
from newsletter.delivery.esp.base import Outcome, Outgoing, Recipient
from newsletter.delivery.esp.registry import adapter_factory
from newsletter.delivery.message import new_message_id

__all__ = ["send_transactional", "tell_editors"]


def tell_editors(settings: Settings, subject: str, body: str) -> list[tuple[str, str]]:
    """Send ``body`` to ``[newsletter] editors``; (address, answer) for each, none if there are none."""
    addresses: Sequence[str] = [str(address) for address in settings.newsletter.editors]
    if not addresses:
        return []
    return _send(
        settings,
        addresses,
        subject=f"[{settings.newsletter.name}] {subject}",
        text=body,
        html=f"<html><body><pre>{html.escape(body)}</pre></body></html>",
        tag="editors",
    )


def send_transactional(settings: Settings, to: str, *, subject: str, text: str, html: str, tag: str) -> str:
    """Send one message to ``to``; the provider's answer (``accepted``, or what went wrong).

    Its delivery id is a random negative number (no ledger row has one), so the outbox keeps each
    such message in a file of its own under ``outbox/0/``.
    """
    first = -(secrets.randbelow(2**52) + 1)
    return _send(settings, [to], subject=subject, text=text, html=html, tag=tag, first=first)[0][1]


def _send(
    settings: Settings,
    addresses: Sequence[str],
    *,
    subject: str,
    text: str,
    html: str,
    tag: str,
    first: int = -1,
) -> list[tuple[str, str]]:
    news = settings.newsletter
    domain = str(news.from_address).rpartition("@")[2]
    message = Outgoing(
        send_id=0,
        key=hashlib.sha256(f"{subject}\0{text}".encode()).hexdigest(),
        subject=subject,
        html=html,
        text=text,
        from_address=str(news.from_address),
        from_name=news.from_name or news.name,
        reply_to=str(news.reply_to),
        list_id=news.list_id,
        tag=tag,
    )
    recipients = [
        Recipient(
            delivery_id=first - i,
            email=address,
            name="",
            values={"email": address, "name": "", "unsubscribe_url": ""},
            headers={"Message-ID": new_message_id(domain)},
        )
        for i, address in enumerate(addresses)
    ]
    adapter = adapter_factory(settings.esp)()
    try:
        adapter.prepare(message)
        results = adapter.send_batch(message, recipients)
        adapter.finish(message)
    finally:
        adapter.close()
    answers = {result.delivery_id: result for result in results}
    out = []
    for recipient in recipients:
        result = answers.get(recipient.delivery_id)
        if result is None:
            out.append((recipient.email, "no answer"))
        elif result.outcome is Outcome.ACCEPTED:
            out.append((recipient.email, "accepted"))
        else:
            out.append((recipient.email, f"{result.outcome}: {result.error or ''}".rstrip(": ")))
    return out
