"""The subscriber's own page: ``/u/TOKEN``, linked from every email's footer and List-Unsubscribe.

- ``POST /u/TOKEN`` with ``List-Unsubscribe=One-Click`` (RFC 8058; urlencoded or multipart, as
  mail providers send it): unsubscribes at once and answers 200 with a tiny body. No cookie, no
  CSRF field, no redirect (a redirected POST becomes a GET). Idempotent. A token for subscriber 0
  (``TokenSigner.probe_token``) is ``newsletter doctor``'s probe: 200, nothing written.
- ``GET /u/TOKEN``: a page that changes nothing by itself, since link scanners and Outlook's Safe
  Links fetch every GET and run its scripts (it has none). It shows the masked address, an
  Unsubscribe button with an optional reason, and the preferences (name, topics); after leaving,
  that it is done, with Resubscribe for ``[web] resubscribe_days``.
- The page's forms (``/u/TOKEN/unsubscribe``, ``/resubscribe``, ``/preferences``, ``/forget``)
  carry a signed field (``web/security.py``) and answer with a redirect back to the page (303).
- A bad, tampered or unknown token, and the token of a forgotten subscriber, get one 400 page that
  says nothing about why: whether an address was ever on the list is not for strangers to learn.

Personal pages are ``Cache-Control: no-store`` and ``X-Robots-Tag: noindex``.
"""

from __future__ import annotations

import datetime as dt
import logging
from functools import partial
from typing import Any

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from newsletter.config import Settings
from newsletter.delivery.runner import secret_key
from newsletter.delivery.tokens import BadToken, TokenSigner
from newsletter.render.archive import stylesheet
from newsletter.render.templates import environment
from newsletter.store import preferences
from newsletter.store.preferences import LEAVING_REASONS, LinkHolder
from newsletter.web.batching import ClickWriter
from newsletter.web.security import BadForm, FormGuard, TooLarge, client_ip, read_form

__all__ = ["mask", "unsubscribe_routes"]

log = logging.getLogger(__name__)
PERSONAL = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow"}
#: Characters of a name, and of a reason's free text, kept.
NAME_MAX = 200
NOTE_MAX = 1000
#: A token is two ids and a signature; anything much longer is not one of ours.
TOKEN_MAX = 120
STALE_FORM = "This form has expired or did not come from this page. Go back, reload the page and try again."
FORGOTTEN = "Your address, name and preferences are erased. We will not write to you again."


def mask(email: str) -> str:
    """``a***@example.org``: enough for the owner to recognise, too little for anyone else to use."""
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}***@{domain}"


def unsubscribe_routes(settings: Settings, engine: Engine) -> list[BaseRoute]:
    signer = TokenSigner(secret_key(settings))
    guard = FormGuard(secret_key(settings), settings.web.form_max_age)
    web = settings.web
    window = dt.timedelta(days=web.resubscribe_days)
    offered = [topic.tag for topic in web.topics]
    limit = settings.webhooks.soft_bounce_limit
    clicks = ClickWriter(partial(preferences.leave_many, engine, source="one-click", soft_bounce_limit=limit))

    def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = (
            environment()
            .get_template(f"web/{template}")
            .render(
                name=settings.newsletter.name,
                language=settings.newsletter.language,
                stylesheet=f"/{stylesheet().path}",
                **context,
            )
        )
        return HTMLResponse(html, status_code=status, headers=PERSONAL)

    def bad_link() -> HTMLResponse:
        return page("bad_link.html.j2", status=400)

    def read(token: str) -> tuple[int, int] | None:
        if len(token) > TOKEN_MAX:
            return None
        try:
            return signer.read_unsubscribe_token(token)
        except BadToken:
            return None

    async def holder_of(token: str) -> tuple[int, LinkHolder] | None:
        ids = read(token)
        if ids is None:
            return None
        found = await run_in_threadpool(preferences.holder, engine, ids[1])
        return None if found is None else (ids[0], found)

    async def form_of(request: Request, action: str) -> dict[str, str]:
        fields = await read_form(request, web.max_form_bytes)
        guard.check(action, fields)
        return fields

    def back(token: str, note: str = "") -> RedirectResponse:
        suffix = f"?done={note}" if note else ""
        return RedirectResponse(f"/u/{token}{suffix}", status_code=303, headers=PERSONAL)

    async def one_click(request: Request) -> Response:
        token = request.path_params["token"]
        try:
            fields = await read_form(request, web.max_form_bytes)
        except TooLarge:
            return PlainTextResponse("Too large.\n", status_code=413, headers=PERSONAL)
        except BadForm:
            fields = {}
        ids = read(token)
        if ids is None or fields.get("List-Unsubscribe") != "One-Click":
            return PlainTextResponse("Not a valid unsubscribe request.\n", status_code=400, headers=PERSONAL)
        send_id, subscriber_id = ids
        if subscriber_id != 0:  # 0 is the doctor's probe: a valid link of nobody
            await clicks.leave(send_id, subscriber_id)
        return PlainTextResponse("Unsubscribed.\n", headers=PERSONAL)

    async def show(request: Request) -> Response:
        token = request.path_params["token"]
        found = await holder_of(token)
        if found is None:
            return bad_link()
        _, holder = found
        base = f"/u/{token}"
        done = request.query_params.get("done", "")
        if holder.left:
            resubscribe = holder.may_resubscribe(window)
            return page(
                "left.html.j2", email=mask(holder.email), resubscribe=resubscribe,
                action=f"{base}/resubscribe", csrf=guard.field(f"{base}/resubscribe"),
                bounced=holder.status.value != "unsubscribed",
            )  # fmt: skip
        topics = [(topic.tag, topic.label, topic.tag in holder.tags) for topic in web.topics]
        return page(
            "preferences.html.j2", email=mask(holder.email), subscriber_name=holder.name or "",
            topics=topics, reasons=LEAVING_REASONS, base=base, saved=done == "saved",
            resubscribed=done == "resubscribed",
            csrf={name: guard.field(f"{base}/{name}") for name in ("unsubscribe", "preferences")},
        )  # fmt: skip

    def form_route(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            token = request.path_params["token"]
            action = request.url.path
            found = await holder_of(token)
            if found is None:
                return bad_link()
            try:
                fields = await form_of(request, action)
            except TooLarge:
                return page("message.html.j2", status=413, title="Too much", text="That form was too large.")
            except BadForm as exc:
                log.info("form refused at /u/…: %s", exc)
                return page("message.html.j2", status=400, title="Please try again", text=STALE_FORM)
            send_id, holder = found
            response: Response = await handler(request, token, send_id, holder, fields)
            return response

        return endpoint

    async def unsubscribe(
        request: Request, token: str, send_id: int, holder: LinkHolder, fields: dict[str, str]
    ) -> Response:
        reason = fields.get("reason", "")
        await run_in_threadpool(
            preferences.leave, engine, holder.id, send_id=send_id, source="page",
            reason=reason if reason in LEAVING_REASONS else None,
            note=fields.get("note", "").strip()[:NOTE_MAX] or None,
            soft_bounce_limit=settings.webhooks.soft_bounce_limit,
        )  # fmt: skip
        return back(token)

    async def resubscribe(
        request: Request, token: str, send_id: int, holder: LinkHolder, fields: dict[str, str]
    ) -> Response:
        ip = client_ip(request, web.trusted_proxies)
        await run_in_threadpool(preferences.resubscribe, engine, holder.id, window=window, ip=ip)
        return back(token, "resubscribed")

    async def save(
        request: Request, token: str, send_id: int, holder: LinkHolder, fields: dict[str, str]
    ) -> Response:
        chosen = [tag for tag in offered if fields.get(f"topic:{tag}") == "on"]
        name = " ".join(fields.get("name", "").split())[:NAME_MAX]
        await run_in_threadpool(
            preferences.save, engine, holder.id, name=name, topics=chosen, offered=offered
        )
        return back(token, "saved")

    async def confirm_forget(request: Request) -> Response:
        token = request.path_params["token"]
        found = await holder_of(token)
        if found is None:
            return bad_link()
        action = f"/u/{token}/forget"
        return page(
            "forget.html.j2",
            email=mask(found[1].email),
            action=action,
            csrf=guard.field(action),
            back=f"/u/{token}",
        )

    async def forget(
        request: Request, token: str, send_id: int, holder: LinkHolder, fields: dict[str, str]
    ) -> Response:
        if fields.get("confirm") != "yes":
            return back(token)
        await run_in_threadpool(preferences.forget, engine, holder.id)
        return page("message.html.j2", title="You have been forgotten", text=FORGOTTEN)

    return [
        Route("/u/{token}", show, methods=["GET", "HEAD"]),
        Route("/u/{token}", one_click, methods=["POST"]),
        Route("/u/{token}/unsubscribe", form_route(unsubscribe), methods=["POST"]),
        Route("/u/{token}/resubscribe", form_route(resubscribe), methods=["POST"]),
        Route("/u/{token}/preferences", form_route(save), methods=["POST"]),
        Route("/u/{token}/forget", confirm_forget, methods=["GET", "HEAD"]),
        Route("/u/{token}/forget", form_route(forget), methods=["POST"]),
    ]
