"""What ``check --links`` asks of every URL an email carries, and what its answers mean.

Pure code: which URLs an issue's email carries (story, button and Markdown links, images, the logo,
the archive "View in browser" link), where each was written, and the verdict rules that turn what
a fetch found (a :class:`LinkResult`) into located findings. The fetching itself (HTTP, DNS, the
cache) lives in ``newsletter.checks.links``; content knows nothing of the network.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel

from newsletter.content.loader import MARKDOWN_FIELDS, FieldPath, LoadedIssue, Problem, markdown_links

if TYPE_CHECKING:
    from tldextract import TLDExtract

    from newsletter.config import NewsletterSettings

__all__ = [
    "REDIRECT_STATUSES",
    "LinkResult",
    "LinkUse",
    "address_refusal",
    "email_links",
    "is_good",
    "link_problems",
    "registrable_domain",
    "verdicts",
]

LinkKind = Literal["link", "image"]
#: Statuses that send the client elsewhere; 301 and 308 say "forever": paste the new URL instead.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
PERMANENT_REDIRECTS = frozenset({301, 308})
#: Model fields holding a URL: ``url`` (stories, headlines, buttons), ``src`` (images), ``link``
#: (an image's link).
_URL_FIELDS = {"url": "link", "src": "image", "link": "link"}


@dataclass(frozen=True)
class LinkUse:
    """One place a URL appears in the email: where it was written and whether it is an image."""

    url: str
    at: FieldPath
    kind: LinkKind
    #: Written in the issue file, or taken from the configuration (logo, archive link).
    origin: str = "issue"


@dataclass(frozen=True)
class LinkResult:
    """What fetching one URL found. ``error`` is set when no final answer came back."""

    url: str
    status: int | None = None
    final_url: str = ""
    #: Each redirect followed: (status, the URL it pointed to).
    redirects: tuple[tuple[int, str], ...] = ()
    #: ``dns``, ``tls``, ``timeout``, ``connect``, ``redirect_loop``, ``too_many_redirects``,
    #: ``private`` (never fetched), ``protocol``.
    error: str = ""
    detail: str = ""
    content_type: str = ""
    content_length: int | None = None
    checked_at: float = 0.0
    cached: bool = field(default=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["redirects"] = [list(hop) for hop in self.redirects]
        del data["cached"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LinkResult:
        """The inverse of :meth:`as_dict`; a malformed entry raises ``TypeError``/``ValueError``."""
        redirects = tuple((int(status), str(url)) for status, url in data.get("redirects", ()))
        length = data.get("content_length")
        return cls(
            url=str(data["url"]),
            status=None if data.get("status") is None else int(data["status"]),
            final_url=str(data.get("final_url", "")),
            redirects=redirects,
            error=str(data.get("error", "")),
            detail=str(data.get("detail", "")),
            content_type=str(data.get("content_type", "")),
            content_length=None if length is None else int(length),
            checked_at=float(data.get("checked_at", 0.0)),
        )


def email_links(loaded: LoadedIssue, settings: NewsletterSettings) -> list[LinkUse]:
    """Every http(s) URL the issue's email carries, in file order, then the configured ones."""
    uses = list(_walk(loaded.issue, ()))
    if settings.logo_url:
        uses.append(LinkUse(settings.logo_url, (), "image", origin="config: newsletter.logo_url"))
    uses.append(
        LinkUse(settings.archive_url(loaded.issue.date), (), "link", origin="config: the archive link")
    )
    return [use for use in uses if urlsplit(use.url).scheme in ("http", "https")]


def _walk(value: Any, at: FieldPath) -> Iterator[LinkUse]:
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _field(getattr(value, name), (*at, name), name)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _walk(item, (*at, index))


def _field(value: Any, at: FieldPath, name: str) -> Iterator[LinkUse]:
    if isinstance(value, str):
        if name in _URL_FIELDS and value:
            yield LinkUse(value, at, "image" if _URL_FIELDS[name] == "image" else "link")
        elif ("](" in value or "<" in value) and _in_markdown(at):
            for href in markdown_links(value):
                yield LinkUse(href, at, "link")
    elif isinstance(value, list | tuple) and name in MARKDOWN_FIELDS and _texts(value):
        for index, text in enumerate(value):  # bullets: a list of Markdown texts
            yield from _field(text, (*at, index), name)
    else:
        yield from _walk(value, at)


def _texts(values: list[Any] | tuple[Any, ...]) -> bool:
    return all(isinstance(value, str) for value in values)


def _in_markdown(at: FieldPath) -> bool:
    """The loader's rule: a text is Markdown when any key on its path names a Markdown field."""
    return bool({part for part in at if isinstance(part, str)} & MARKDOWN_FIELDS)


def address_refusal(address: str) -> str:
    """Why an address must never be fetched from the service (empty: it may be)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback or ip.is_unspecified:  # 0.0.0.0 and :: reach this machine too
        return "a loopback address"
    if ip.is_link_local:  # 169.254.169.254, the cloud metadata service, is one
        return "a link-local (cloud metadata) address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global or ip.is_multicast:
        return "a reserved address"
    return ""


@cache
def _extractor() -> TLDExtract:
    import tldextract  # the bundled Public Suffix List snapshot, never fetched

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def registrable_domain(url: str) -> str:
    """``https://www.bbc.co.uk/x`` -> ``bbc.co.uk``; an IP address or bare name is itself."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    parts = _extractor()(host)
    return parts.top_domain_under_public_suffix or host


def is_good(result: LinkResult) -> bool:
    """A final answer below 400: cached a day; anything else is cached an hour."""
    return not result.error and result.status is not None and result.status < 400


def verdicts(
    result: LinkResult, kind: LinkKind, *, image_max_bytes: int = 1024 * 1024
) -> list[tuple[str, str]]:
    """The findings of one fetched URL as (severity, message)."""
    if result.error:
        return [("error", _error_message(result))]
    out: list[tuple[str, str]] = []
    status = result.status or 0
    if status >= 400:
        out.append(("error", f"{result.url} answers {status}" + _via(result)))
        return out
    permanent = [hop for hop in result.redirects if hop[0] in PERMANENT_REDIRECTS]
    if permanent:
        out.append(
            ("warning", f"{result.url} moved permanently ({permanent[0][0]}); use {result.final_url} instead")
        )
    if result.redirects and registrable_domain(result.final_url) != registrable_domain(result.url):
        out.append(
            ("warning", f"{result.url} redirects to another site, {result.final_url} "
             "(moved, or a parked or expired domain?)")
        )
    if kind == "image":
        mime = result.content_type.split(";", 1)[0].strip().lower()
        if not mime.startswith("image/"):
            out.append(("warning", f"image {result.url} is {mime or 'of no stated type'}, not an image"))
        if result.content_length is not None and result.content_length > image_max_bytes:
            size, limit = result.content_length / 1024 / 1024, image_max_bytes / 1024 / 1024
            out.append(("warning", f"image {result.url} is {size:.1f} MB; keep images under {limit:g} MB"))
    return out


def _via(result: LinkResult) -> str:
    return f" (after redirects, at {result.final_url})" if result.redirects else ""


def _error_message(result: LinkResult) -> str:
    detail = f": {result.detail}" if result.detail else ""
    match result.error:
        case "dns":
            return f"{result.url}: its host does not resolve{detail}"
        case "tls":
            return f"{result.url}: TLS error{detail}"
        case "timeout":
            return f"{result.url}: no answer in time{detail}"
        case "redirect_loop":
            return f"{result.url}: redirect loop{detail}"
        case "too_many_redirects":
            return f"{result.url}: too many redirects{detail}"
        case "private":
            return (
                f"{result.url}: not fetched: its host is {result.detail} "
                "(set [check] allow_private_links = true to allow)"
            )
        case _:
            return f"{result.url}: cannot connect{detail}"


def link_problems(
    loaded: LoadedIssue,
    uses: Iterable[LinkUse],
    results: Mapping[str, LinkResult],
    *,
    image_max_bytes: int = 1024 * 1024,
) -> list[Problem]:
    """The located findings of every use of every fetched URL, in file order."""
    problems: list[Problem] = []
    for use in uses:
        result = results.get(use.url)
        if result is None:
            continue
        for severity, message in verdicts(result, use.kind, image_max_bytes=image_max_bytes):
            if use.origin != "issue":
                message = f"{message} ({use.origin})"
            problems.append(loaded.source.problem(use.at, message, severity=severity))
    problems.sort(key=lambda problem: (problem.line, problem.column))
    return problems
