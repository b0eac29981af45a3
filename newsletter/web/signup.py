"""Sign-up with double opt-in, and "mail me my preferences link", on ``newsletter serve``.

``GET /subscribe`` is the form; ``POST /subscribe`` answers every well-formed request with the same
"check your inbox" page, whoever the address belongs to (new, pending, active, unsubscribed,
suppressed), and does the work after the answer has gone (a background task in a worker thread): the
store records a *pending* subscriber and the confirmation goes out through the configured provider,
or nothing happens (an active address has nothing to confirm; a bounced, complained or forgotten one
gets no mail at all). ``GET /confirm/TOKEN`` shows one Confirm button and changes nothing (link
checkers follow GETs); its ``POST`` makes the subscriber active and records the consent. The
confirmation mail's "this wasn't me" link (``/confirm/TOKEN/cancel``, again a button) deletes the
pending row. ``GET /manage`` and its POST mail an existing subscriber the link of their preferences
page (``/u/TOKEN``), with the same answer for everyone.

Bots: the POSTs carry a honeypot field (a filled one gets the usual answer and nothing else) and an
ALTCHA proof of work (``GET /altcha/challenge``; each solved challenge is accepted once, its
signature claimed in the webhook nonce store). They are checked by that challenge instead of a CSRF
token, so the form can be embedded on another site (``newsletter web form``). Mails to one address
and one address domain, and requests from one client address, are rate limited (``[web] limit_*``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import logging
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from newsletter.config import DATABASE_LIMITS, Settings
from newsletter.delivery.notes import send_transactional
from newsletter.delivery.runner import secret_key
from newsletter.delivery.tokens import BadToken, ExpiredToken, TokenSigner
from newsletter.errors import BadInput
from newsletter.render.templates import environment, templates_dir
from newsletter.store import ratelimits
from newsletter.store.addresses import normalize
from newsletter.store.db import session_scope, writing
from newsletter.store.nonces import Nonce, Replayed, claim
from newsletter.store.subscribers import SubscriberRepository
from newsletter.web.security import TooLarge, client_ip, read_body

__all__ = ["ALTCHA_ENV", "CSP", "SignupSite", "altcha_key", "embed_snippet", "signup_routes"]

log = logging.getLogger(__name__)
HTML = "text/html; charset=utf-8"
ALTCHA_ENV = "NEWSLETTER_ALTCHA_KEY"
#: Where ``scripts/install-altcha.sh`` puts the widget; served as ``/static/altcha.min.js``.
WIDGET = Path(__file__).parent / "static" / "altcha.min.js"
#: The sign-up pages run only our own scripts: the ALTCHA widget, which solves its challenge in
#: workers it starts from blob: URLs and styles itself inline (styles, never inline script).
CSP = (
    "default-src 'none'; script-src 'self'; worker-src 'self' blob:; connect-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # /confirm/TOKEN holds a token in its path
    "Cache-Control": "no-store",
}
#: The form fields; a request naming any other is refused.
FIELDS = frozenset({"email", "name", "topics", "website", "altcha"})
HONEYPOT = "website"
MAX_NAME = 200
MAX_EMAIL = 254
MAX_ALTCHA = 4096
MAX_FIELDS = 64


class FormError(Exception):
    """A request that is not a form we offer: answered 4xx with ``message``, nothing done."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def altcha_key(environ: Mapping[str, str], fallback_secret: str) -> str:
    """The challenges' HMAC key: ``NEWSLETTER_ALTCHA_KEY``, or one derived from the secret key
    (so it survives restarts either way)."""
    key = environ.get(ALTCHA_ENV, "")
    if key:
        return key
    return hashlib.sha256(f"newsletter.altcha.{fallback_secret}".encode()).hexdigest()


@dataclass
class Limits:
    """``[web] limit_*`` over one storage: the service's database (``"database"``, shared by every
    ``serve`` process: ``store/ratelimits.py``), or a ``limits`` storage URI with a moving window
    per key (``memory://``: this process only)."""

    per_address: list[Any]
    per_domain: list[Any]
    per_ip: list[Any]
    limiter: Any = field(repr=False)
    engine: Engine | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine) -> Limits:
        from limits import parse_many, storage, strategies

        web = settings.web
        address, domain, ip = (parse_many(web.limit_per_address), parse_many(web.limit_per_domain),
                               parse_many(web.limit_per_ip))
        if web.limit_storage == DATABASE_LIMITS:
            return cls(address, domain, ip, limiter=None, engine=engine)
        backend = storage.storage_from_string(web.limit_storage)
        return cls(address, domain, ip, limiter=strategies.MovingWindowRateLimiter(backend))

    def allow(self, scope: str, items: list[Any], key: str) -> bool:
        """Count one request for ``key`` against every limit in ``items``; False if one is full.
        Blocks on the database: call it from a worker thread."""
        if self.engine is not None:
            windows = [ratelimits.Window(item.amount, item.get_expiry(), str(item)) for item in items]
            return ratelimits.allow(self.engine, scope, key, windows)
        if not all(self.limiter.test(item, scope, key) for item in items):
            return False
        for item in items:
            self.limiter.hit(item, scope, key)
        return True


@dataclass(frozen=True)
class SubmittedForm:
    email: str
    name: str
    topics: tuple[str, ...]
    honeypot: bool
    altcha: str


class SignupSite:
    """The sign-up and manage pages over one database and provider."""

    def __init__(self, settings: Settings, engine: Engine, environ: Mapping[str, str] | None = None) -> None:
        import os

        env = dict(os.environ) if environ is None else dict(environ)
        secret = secret_key(settings, env)
        self.settings = settings
        self.engine = engine
        self.signer = TokenSigner(secret)
        self.hmac_key = altcha_key(env, secret)
        self.limits = Limits.from_settings(settings, engine)
        self.templates = environment()
        self.topics = {topic.tag: topic.label for topic in settings.web.topics}

    # -- pages -----------------------------------------------------------------------------

    def page(self, template: str, status: int = 200, **context: Any) -> Response:
        news = self.settings.newsletter
        body = self.templates.get_template(f"web/signup/{template}").render(
            newsletter=news.name, language=news.language, topics=self.settings.web.topics, **context
        )
        return Response(body, status_code=status, media_type=HTML, headers=HEADERS)

    def challenge(self) -> dict[str, Any]:
        import altcha

        web = self.settings.web
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=web.altcha_expires)
        made = altcha.create_challenge(
            "PBKDF2/SHA-256", web.altcha_cost, expires_at=expires, hmac_secret=self.hmac_key
        )
        return made.to_dict()

    def verify_challenge(self, payload: str) -> None:
        """Accept a solved challenge of ours once; :class:`FormError` for anything else."""
        import altcha

        if not payload:
            raise FormError("the anti-robot check is missing: please wait until it has finished")
        try:
            result = altcha.verify_solution(payload, self.hmac_key)
        except Exception:  # the library raises what its parser meets: any of it is a bad payload
            log.info("altcha payload refused: unreadable", exc_info=True)
            raise FormError("the anti-robot check failed: please try again") from None
        if not result.verified:
            raise FormError("the anti-robot check failed: please try again")
        signature = altcha.Payload.from_base64(payload).challenge.signature or ""
        try:
            with writing(self.engine).begin() as conn:
                claim(conn, Nonce("altcha", hashlib.sha256(signature.encode()).hexdigest()))
        except Replayed:
            raise FormError("the anti-robot check was used before: please reload the page") from None

    # -- the work done after the answer ----------------------------------------------------

    async def may_mail(self, address: str) -> bool:
        """:meth:`mail_allowed` off the event loop when it waits on the database; in memory on the
        loop itself, so one request's test and hit cannot interleave with another's."""
        if self.limits.engine is None:
            return self.mail_allowed(address)
        return await run_in_threadpool(self.mail_allowed, address)

    async def may_serve(self, ip: str) -> bool:
        """The per-IP limit, where :meth:`may_mail` counts its limits."""
        limits = self.limits
        if limits.engine is None:
            return limits.allow("ip", limits.per_ip, ip)
        return await run_in_threadpool(limits.allow, "ip", limits.per_ip, ip)

    def mail_allowed(self, address: str) -> bool:
        domain = address.rpartition("@")[2]
        if not self.limits.allow("address", self.limits.per_address, address):
            return False
        return self.limits.allow("domain", self.limits.per_domain, domain)

    def subscribe(self, form: SubmittedForm, form_url: str | None) -> None:
        """Record the sign-up and mail its confirmation (or do nothing); runs off the request path."""
        try:
            with session_scope(self.engine) as session:
                request = SubscriberRepository(session).request_signup(
                    form.email, name=form.name or None, tags=form.topics, form_url=form_url
                )
        except IntegrityError:  # the same new address twice at once: the other request mails
            return
        if request is None:
            return
        base = self.settings.newsletter.base_url
        token = self.signer.confirm_token(request.subscriber_id, request.nonce)
        self.mail(
            request.email,
            "confirm",
            confirm_url=f"{base}/confirm/{token}",
            cancel_url=f"{base}/confirm/{token}/cancel",
            hours=self.settings.web.confirm_hours,
        )

    def manage(self, email: str) -> None:
        with session_scope(self.engine, read_only=True) as session:
            subscriber_id = SubscriberRepository(session).preferences_target(email)
        if subscriber_id is None:
            return
        base = self.settings.newsletter.base_url
        url = f"{base}/u/{self.signer.unsubscribe_token(0, subscriber_id)}"
        self.mail(email, "manage", preferences_url=url)

    def mail(self, to: str, kind: str, **context: Any) -> None:
        news = self.settings.newsletter
        context = {"newsletter": news.name, "postal_address": news.postal_address, **context}
        subject = self.templates.get_template(f"web/signup/{kind}.subject.j2").render(**context).strip()
        text = self.templates.get_template(f"web/signup/{kind}.txt.j2").render(**context)
        body = self.templates.get_template(f"web/signup/{kind}.email.html.j2").render(**context)
        try:
            answer = send_transactional(
                self.settings, to, subject=subject, text=text, html=body, tag=f"signup-{kind}"
            )
        except Exception:
            log.exception("the %s mail could not be sent", kind)
            return
        if answer != "accepted":
            log.warning("the %s mail was not accepted: %s", kind, answer)


async def read_form(request: Request, limit: int) -> dict[str, list[str]]:
    """The urlencoded body as fields, or :class:`FormError`: too large (413), not a form (415),
    not UTF-8, a NUL or control character, too many fields or an unknown one (400)."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise FormError("send the form as application/x-www-form-urlencoded", 415)
    try:
        body = await read_body(request, limit)
    except TooLarge:
        raise FormError("the form is too large", 413) from None
    try:
        text = body.decode("ascii")
        pairs = urllib.parse.parse_qsl(
            text, keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict"
        )
    except (UnicodeDecodeError, ValueError):
        raise FormError("the form is not valid") from None
    fields: dict[str, list[str]] = {}
    for key, value in pairs:
        if key not in FIELDS:
            raise FormError("the form has a field it should not have")
        if any(ord(c) < 32 and c not in "\t" for c in value) or "\x7f" in value:
            raise FormError("the form has a control character in it")
        fields.setdefault(key, []).append(value)
    return fields


def _one(fields: dict[str, list[str]], key: str, limit: int) -> str:
    values = fields.get(key, [])
    if len(values) > 1:
        raise FormError(f"the form has {key} more than once")
    value = values[0].strip() if values else ""
    if len(value) > limit:
        raise FormError(f"the {key} is too long")
    return value


def signup_routes(
    settings: Settings, engine: Engine, environ: Mapping[str, str] | None = None
) -> list[BaseRoute]:
    site = SignupSite(settings, engine, environ)
    max_age = settings.web.confirm_hours * 3600

    def parse(fields: dict[str, list[str]], *, signup: bool) -> SubmittedForm:
        email = _one(fields, "email", MAX_EMAIL)
        try:
            address = normalize(email).email
        except BadInput as exc:
            raise FormError(f"that email address does not work: {exc}") from None
        name = _one(fields, "name", MAX_NAME) if signup else ""
        topics = tuple(dict.fromkeys(fields.get("topics", []))) if signup else ()
        if any(topic not in site.topics for topic in topics):
            raise FormError("choose topics from the list")
        return SubmittedForm(
            email=address,
            name=name,
            topics=topics,
            honeypot=bool(_one(fields, HONEYPOT, 1000)),
            altcha=_one(fields, "altcha", MAX_ALTCHA),
        )

    async def submitted(request: Request, *, signup: bool) -> SubmittedForm | Response:
        template = "subscribe.html.j2" if signup else "manage.html.j2"
        try:
            fields = await read_form(request, settings.web.max_form_bytes)
            form = parse(fields, signup=signup)
        except FormError as exc:
            return site.page(template, exc.status, error=str(exc), values={})
        ip = client_ip(request, settings.web.trusted_proxies) or "unknown"
        if not await site.may_serve(ip):
            busy = "too many requests from your network: try again later"
            return site.page(template, 429, error=busy, values={})
        if form.honeypot:
            return form
        try:
            await run_in_threadpool(site.verify_challenge, form.altcha)
        except FormError as exc:
            values = {"email": form.email, "name": form.name, "topics": form.topics}
            return site.page(template, exc.status, error=str(exc), values=values)
        return form

    async def subscribe_form(request: Request) -> Response:
        return site.page("subscribe.html.j2", values={})

    async def subscribe(request: Request) -> Response:
        form = await submitted(request, signup=True)
        if isinstance(form, Response):
            return form
        answer = site.page("check_inbox.html.j2")
        if not form.honeypot and await site.may_mail(normalize(form.email).normalized):
            form_url = request.headers.get("referer") or f"{settings.newsletter.base_url}/subscribe"
            answer.background = BackgroundTask(run_in_threadpool, site.subscribe, form, form_url)
        return answer

    async def manage_form(request: Request) -> Response:
        return site.page("manage.html.j2", values={})

    async def manage(request: Request) -> Response:
        form = await submitted(request, signup=False)
        if isinstance(form, Response):
            return form
        answer = site.page("check_inbox.html.j2", manage=True)
        if not form.honeypot and await site.may_mail(normalize(form.email).normalized):
            answer.background = BackgroundTask(run_in_threadpool, site.manage, form.email)
        return answer

    def outstanding(token: str) -> tuple[int, str] | Response:
        if len(token) > 200:
            return site.page("invalid.html.j2", 400)
        try:
            subscriber_id, nonce = site.signer.read_confirm_token(token, max_age=max_age)
        except ExpiredToken:
            return site.page("invalid.html.j2", 400, expired=True)
        except BadToken:
            return site.page("invalid.html.j2", 400)
        return subscriber_id, nonce

    def still_open(subscriber_id: int, nonce: str) -> bool:
        with session_scope(engine, read_only=True) as session:
            return SubscriberRepository(session).outstanding_signup(subscriber_id, nonce) is not None

    async def confirm(request: Request) -> Response:
        cancel = request.url.path.endswith("/cancel")
        found = outstanding(request.path_params["token"])
        if isinstance(found, Response):
            return found
        subscriber_id, nonce = found
        if request.method == "GET":
            if not await run_in_threadpool(still_open, subscriber_id, nonce):
                return site.page("invalid.html.j2", 400, used=True)
            return site.page("cancel.html.j2" if cancel else "confirm.html.j2", action=request.url.path)
        client = client_ip(request, settings.web.trusted_proxies)
        agent = request.headers.get("user-agent")

        def act() -> bool:
            with session_scope(engine) as session:
                repo = SubscriberRepository(session)
                if cancel:
                    return repo.cancel_signup(subscriber_id, nonce)
                return repo.confirm_signup(
                    subscriber_id,
                    nonce,
                    ip=client,
                    user_agent=agent,
                    text_version=settings.web.consent_text_version,
                )

        if not await run_in_threadpool(act):
            return site.page("invalid.html.j2", 400, used=True)
        return site.page("cancelled.html.j2" if cancel else "confirmed.html.j2")

    async def challenge(request: Request) -> Response:
        headers = {"Cache-Control": "no-store", "Access-Control-Allow-Origin": "*"}
        return JSONResponse(await run_in_threadpool(site.challenge), headers=headers)

    async def widget(request: Request) -> Response:
        if not WIDGET.is_file():
            return Response("the ALTCHA widget is not installed (scripts/install-altcha.sh)", 404)
        cache = {"Cache-Control": "public, max-age=3600"}
        return FileResponse(WIDGET, media_type="text/javascript", headers=cache)

    async def stylesheet(request: Request) -> Response:
        css = (templates_dir() / "web" / "signup" / "signup.css").read_bytes()
        return Response(css, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})

    return [
        Route("/subscribe", subscribe_form, methods=["GET"]),
        Route("/subscribe", subscribe, methods=["POST"]),
        Route("/manage", manage_form, methods=["GET"]),
        Route("/manage", manage, methods=["POST"]),
        Route("/confirm/{token}", confirm, methods=["GET", "POST"]),
        Route("/confirm/{token}/cancel", confirm, methods=["GET", "POST"]),
        Route("/altcha/challenge", challenge, methods=["GET"]),
        Route("/static/altcha.min.js", widget, methods=["GET"]),
        Route("/static/signup.css", stylesheet, methods=["GET"]),
    ]


def embed_snippet(settings: Settings) -> str:
    """The HTML another site pastes to embed the sign-up form (it posts to ``{base_url}/subscribe``)."""
    base = html.escape(settings.newsletter.base_url, quote=True)
    name = html.escape(settings.newsletter.name)
    topics = "".join(
        f'\n    <label><input type="checkbox" name="topics" value="{html.escape(t.tag, quote=True)}"> '
        f"{html.escape(t.label)}</label>"
        for t in settings.web.topics
    )
    fieldset = f'\n  <fieldset>\n    <legend>Topics</legend>{topics}\n  </fieldset>' if topics else ""
    return f"""<script async type="module" src="{base}/static/altcha.min.js"></script>
<form method="post" action="{base}/subscribe" class="newsletter-signup">
  <h2>Subscribe to {name}</h2>
  <label for="nl-email">Email address</label>
  <input id="nl-email" type="email" name="email" required maxlength="{MAX_EMAIL}" autocomplete="email">
  <label for="nl-name">Name (optional)</label>
  <input id="nl-name" type="text" name="name" maxlength="{MAX_NAME}" autocomplete="name">{fieldset}
  <div hidden aria-hidden="true"><label>Leave this empty
    <input type="text" name="{HONEYPOT}" tabindex="-1" autocomplete="off"></label></div>
  <altcha-widget challenge="{base}/altcha/challenge"></altcha-widget>
  <button type="submit">Subscribe</button>
</form>
"""
