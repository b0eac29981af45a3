"""The webhook app: ``POST /webhooks/{provider}`` stores and applies a provider's events.

Each request is checked in the order that spends the least on a stranger: a known provider (404),
a body of at most 1 MiB (413), the provider's credentials (401: nothing is parsed or stored), a
payload of the provider's shape (400; for a provider whose signature travels in the body, SNS's,
a body that is not even its envelope is a 400 before any signature is checked), a provider's own
control message (200, no events), and then its events are stored and applied in one transaction:
``200 {"received": n, "new": m}``. Anything but a 2xx makes the provider retry, and a replay
changes nothing, so retries are safe. A provider's one-time nonce (Mailgun's token) is claimed in
that same transaction: a request repeating one is a replay, refused (401) with nothing stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from newsletter.config import Settings
from newsletter.events import mailgun, postmark, sendgrid, ses
from newsletter.events.model import BadPayload, ProviderEvent, Verdict, WebhookRequest
from newsletter.store.db import writing
from newsletter.store.events import record_events
from newsletter.store.models import utcnow
from newsletter.store.nonces import Nonce, Replayed
from newsletter.web.archive import archive_routes
from newsletter.web.security import SecurityHeaders, TooLarge, read_body
from newsletter.web.signup import signup_routes
from newsletter.web.unsubscribe import unsubscribe_routes

__all__ = ["MAX_BODY", "create_app"]

#: The largest webhook body accepted: Postmark's and Mailgun's records are a few KB, an SNS message
#: at most 256 KB, and SendGrid posts its batches at 768 KB at most.
MAX_BODY = 1024 * 1024
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Provider:
    """How to trust and read one provider's webhooks.

    ``verify`` may block (a certificate fetch): it runs in a worker thread; it raises
    :class:`BadPayload` when the body is not even the envelope its signature lives in.
    ``control`` answers a provider's own control messages (an SNS subscription confirmation) after
    verification, and returns True when the request was one, so it carries no events.
    """

    verify: Callable[[WebhookRequest, Settings], Verdict]
    parse: Callable[[bytes], list[ProviderEvent]]
    control: Callable[[WebhookRequest, Settings], bool] | None = None


PROVIDERS = {
    postmark.PROVIDER: Provider(verify=postmark.verify, parse=postmark.parse),
    sendgrid.PROVIDER: Provider(verify=sendgrid.verify, parse=sendgrid.parse),
    mailgun.PROVIDER: Provider(verify=mailgun.verify, parse=mailgun.parse),
    ses.PROVIDER: Provider(verify=ses.verify, parse=ses.parse, control=ses.control),
}


def create_app(settings: Settings, engine: Engine) -> Starlette:
    """The app for ``newsletter serve`` (and tests): ``engine`` must be migrated."""

    def store(events: list[ProviderEvent], nonce: Nonce | None) -> int:
        with writing(engine).begin() as conn:
            return record_events(
                conn, events, soft_bounce_limit=settings.webhooks.soft_bounce_limit, nonce=nonce
            )

    def unauthorized(name: str, reason: str) -> JSONResponse:
        log.info("%s webhook refused: %s", name, reason)
        challenge = {"WWW-Authenticate": 'Basic realm="webhooks"'}
        return JSONResponse({"error": "unauthorized"}, status_code=401, headers=challenge)

    async def webhook(request: Request) -> JSONResponse:
        name = request.path_params["provider"]
        provider = PROVIDERS.get(name)
        if provider is None:
            return JSONResponse({"error": "unknown provider"}, status_code=404)
        try:
            body = await read_body(request, MAX_BODY)
        except TooLarge:
            return JSONResponse({"error": "body too large"}, status_code=413)
        hook = WebhookRequest(headers=request.headers, body=body, received_at=utcnow())
        try:
            verdict = await run_in_threadpool(provider.verify, hook, settings)
        except BadPayload as exc:
            log.info("%s webhook refused: %s", name, exc)
            return JSONResponse({"error": str(exc)}, status_code=400)
        if not verdict.trusted:
            return unauthorized(name, verdict.reason)
        if provider.control is not None and await run_in_threadpool(provider.control, hook, settings):
            return JSONResponse({"received": 0, "new": 0})
        try:
            events = provider.parse(body)
        except BadPayload as exc:
            log.info("%s webhook refused: %s", name, exc)
            return JSONResponse({"error": str(exc)}, status_code=400)
        nonce = None if verdict.nonce is None else Nonce(name, verdict.nonce)
        try:
            new = await run_in_threadpool(store, events, nonce)
        except Replayed as exc:
            return unauthorized(name, str(exc))
        return JSONResponse({"received": len(events), "new": new})

    routes = [
        Route("/webhooks/{provider}", webhook, methods=["POST"]),
        *unsubscribe_routes(settings, engine),
        *archive_routes(settings, engine),
        *signup_routes(settings, engine),
    ]
    https = settings.newsletter.base_url.startswith("https://")
    return Starlette(routes=routes, middleware=[Middleware(SecurityHeaders, https=https)])
