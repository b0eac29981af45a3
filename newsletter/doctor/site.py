"""The links every email carries, tried as a mailbox provider and a reader would: ``base_url``
is https, ``/healthz`` answers, a one-click unsubscribe POST answers 200 without a redirect, and
the latest issue's "View in browser" page is there.

The one-click POST goes to the doctor's own token (``TokenSigner.probe_token``: send 0,
subscriber 0), which the endpoint accepts and which unsubscribes nobody.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

import httpx

from newsletter.config import Settings
from newsletter.delivery.runner import require_https_links, secret_key
from newsletter.delivery.tokens import TokenSigner
from newsletter.doctor.model import Check, fail, ok, warn
from newsletter.errors import NewsletterError

__all__ = ["SECTION", "check_site"]

SECTION: Final = "The subscriber links"
_SERVE: Final = "start `newsletter serve` where base_url points (or fix the proxy in front of it)"


def check_site(settings: Settings, environ: Mapping[str, str], latest_issue: dt.date | None) -> list[Check]:
    base = settings.newsletter.base_url
    checks = [_base_url(settings)]
    with httpx.Client(
        timeout=settings.doctor.timeout,
        follow_redirects=False,
        headers={"User-Agent": "newsletter-doctor"},
    ) as client:
        try:
            health = client.get(f"{base}/healthz")
        except httpx.HTTPError as exc:
            checks.append(fail(SECTION, "healthz", f"nothing answers at {base}/healthz: {_why(exc)}", _SERVE))
            return checks
        if health.status_code == 200:
            checks.append(ok(SECTION, "healthz", f"{base}/healthz answers 200"))
        else:
            checks.append(fail(SECTION, "healthz", f"{base}/healthz answers {health.status_code}", _SERVE))
        checks.append(_one_click(client, settings, environ))
        checks.append(_archive(client, settings, latest_issue))
    return checks


def _base_url(settings: Settings) -> Check:
    base = settings.newsletter.base_url
    try:
        require_https_links(settings)
    except NewsletterError as exc:
        return fail(
            SECTION,
            "base_url",
            str(exc),
            "set [newsletter] base_url to the https address of newsletter serve",
        )
    if urlsplit(base).scheme == "https":
        return ok(SECTION, "base_url", base)
    return warn(
        SECTION,
        "base_url",
        f"{base} is plain http: fine on this machine; mail providers need https for one-click unsubscribe",
        "set [newsletter] base_url to the https address of newsletter serve before sending for real",
    )


def _one_click(client: httpx.Client, settings: Settings, environ: Mapping[str, str]) -> Check:
    name = "one-click unsubscribe"
    try:
        token = TokenSigner(secret_key(settings, dict(environ))).probe_token()
    except NewsletterError as exc:
        return fail(SECTION, name, f"not tried: {exc}", "set NEWSLETTER_SECRET_KEY")
    url = f"{settings.newsletter.base_url}/u/{token}"
    try:
        response = client.post(
            url,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    except httpx.HTTPError as exc:
        return fail(SECTION, name, f"POST /u/… failed: {_why(exc)}", _SERVE)
    if response.is_redirect:
        where = response.headers.get("Location", "?")
        return fail(
            SECTION,
            name,
            f"POST /u/… answers {response.status_code}, a redirect to {where}: a redirected POST "
            "becomes a GET and the unsubscribe is lost (RFC 8058)",
            "serve /u/ directly at base_url (no redirect to https or www in front of it)",
        )
    if response.status_code != 200:
        return fail(SECTION, name, f"POST /u/… answers {response.status_code}", _SERVE)
    return ok(SECTION, name, "POST /u/… answers 200 without a redirect (RFC 8058)")


def _archive(client: httpx.Client, settings: Settings, latest_issue: dt.date | None) -> Check:
    name = "View in browser"
    if latest_issue is None:
        return warn(SECTION, name, "no issue has been sent yet, so no archive page to try")
    url = settings.newsletter.archive_url(latest_issue)
    try:
        response = client.get(url)
    except httpx.HTTPError as exc:
        return fail(SECTION, name, f"{url}: {_why(exc)}", _SERVE)
    if response.status_code != 200:
        return fail(
            SECTION,
            name,
            f"{url} answers {response.status_code}",
            "serve the archive: `newsletter serve` publishes it",
        )
    return ok(SECTION, name, f"{url} answers 200")


def _why(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
