"""A plain message to the editors, through the configured provider and outside the ledger.

The scheduler uses it when a scheduled send does not go out (a missing or failing issue file, a
missed time): the people who can fix it hear of it by email as well as in the worker's log. It is
one small text message, so it takes the provider's ordinary path with no unsubscribe machinery.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Sequence

from newsletter.config import Settings
from newsletter.delivery.esp.base import Outcome, Outgoing, Recipient
from newsletter.delivery.esp.registry import adapter_factory
from newsletter.delivery.message import new_message_id

__all__ = ["tell_editors"]


def tell_editors(settings: Settings, subject: str, body: str) -> list[tuple[str, str]]:
    """Send ``body`` to ``[newsletter] editors``; (address, answer) for each, none if there are none."""
    addresses: Sequence[str] = [str(address) for address in settings.newsletter.editors]
    if not addresses:
        return []
    news = settings.newsletter
    domain = str(news.from_address).rpartition("@")[2]
    message = Outgoing(
        send_id=0,
        key=hashlib.sha256(f"{subject}\0{body}".encode()).hexdigest(),
        subject=f"[{news.name}] {subject}",
        html=f"<html><body><pre>{html.escape(body)}</pre></body></html>",
        text=body,
        from_address=str(news.from_address),
        from_name=news.from_name or news.name,
        reply_to=str(news.reply_to),
        list_id=news.list_id,
        tag="editors",
    )
    recipients = [
        Recipient(
            delivery_id=-(i + 1),
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
