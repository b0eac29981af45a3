"""The link fetcher of ``check --links``, ``send`` and the worker: every URL of an email, at once.

Each URL is asked with HEAD, or with a GET whose body is never read past ``[check] max_body_bytes``
where the server refuses HEAD (405, 403, 501). Redirects are followed by hand, so each hop's host is
checked before it is asked, loops are seen and the chain is kept for the findings. ``[check]
concurrency`` requests run at once, at most ``per_host`` of them to one host, so an issue takes
about as long as its slowest link. What the answers mean is ``newsletter.content.links``'s business.

No server-side request forgery: a host that resolves to a loopback, private, link-local or reserved
address is reported and never asked (unless ``allow_private_links``). The check is made twice:
before asking, for a clear finding, and again by the connection itself (:class:`_GuardedBackend`),
which connects only to the address it checked, so a name that resolves elsewhere the second time
(DNS rebinding) still never reaches the private network.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from newsletter.checks.cache import LinkCache
from newsletter.config import CheckSettings
from newsletter.content.links import REDIRECT_STATUSES, LinkResult, address_refusal
from newsletter.errors import BadInput

if TYPE_CHECKING:
    from newsletter.config import Settings
    from newsletter.content.loader import LoadedIssue, Problem

__all__ = ["check_issue_links", "fetch_links"]

#: Statuses with which servers refuse HEAD; the GET that follows reads only the headers.
HEAD_REFUSED = frozenset({403, 405, 501})
USER_AGENT = "newsletter-link-check/1 (+the editors' pre-send check)"


class _Refused(Exception):
    """A host whose address must not be reached."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


async def _resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _refusal(addresses: Sequence[str]) -> str:
    for address in addresses:
        if why := address_refusal(address):
            return f"{why} ({address})"
    return ""


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host itself, refuses private addresses, and connects to the address it checked."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await _resolve(host, port)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"[dns] {exc.strerror or exc}") from None
        if why := _refusal(addresses):
            raise httpcore.ConnectError(f"[private] {why}")
        return await self._inner.connect_tcp(
            addresses[0], port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not links")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _client(config: CheckSettings, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=config.concurrency, max_keepalive_connections=config.concurrency)
    if transport is None:
        transport = _transport(config, limits)
    return httpx.AsyncClient(
        transport=transport,
        follow_redirects=False,
        timeout=httpx.Timeout(config.timeout),
        headers={"User-Agent": USER_AGENT, "Accept": "*/*"},
        trust_env=False,  # no proxy from the environment: the guard must see the real host
    )


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """Loading the CA bundle takes tens of milliseconds: once per process, not per check."""
    return httpx.create_ssl_context()


def _transport(config: CheckSettings, limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    transport = httpx.AsyncHTTPTransport(verify=_ssl_context(), limits=limits, retries=0)
    if not config.allow_private_links:
        # httpx builds its pool without a way to pass a network backend; this swaps in the same pool
        # with the guarded one.
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=_ssl_context(),
            max_connections=config.concurrency,
            max_keepalive_connections=config.concurrency,
            network_backend=_GuardedBackend(httpcore.AnyIOBackend()),
        )
    return transport


class _Fetcher:
    def __init__(self, client: httpx.AsyncClient, config: CheckSettings) -> None:
        self.client, self.config = client, config
        per_host = config.per_host
        self.hosts: defaultdict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(per_host))

    async def fetch(self, url: str) -> LinkResult:
        redirects: list[tuple[int, str]] = []
        seen = {url}
        current = url
        while True:
            try:
                response = await self._ask(current)
            except _Refused as exc:
                return self._failed(url, current, redirects, "private", exc.why)
            except _Failure as exc:
                return self._failed(url, current, redirects, exc.kind, exc.detail)
            location = response.headers.get("location")
            if response.status_code in REDIRECT_STATUSES and location:
                target = urljoin(current, location.strip())
                if urlsplit(target).scheme not in ("http", "https"):
                    return self._failed(url, current, redirects, "protocol", f"redirects to {target[:200]}")
                redirects.append((response.status_code, target))
                if target in seen:
                    return self._failed(url, target, redirects, "redirect_loop", f"back to {target}")
                if len(redirects) > self.config.max_redirects:
                    why = f"more than {self.config.max_redirects}"
                    return self._failed(url, target, redirects, "too_many_redirects", why)
                seen.add(target)
                current = target
                continue
            length = response.headers.get("content-length", "")
            return LinkResult(
                url=url,
                status=response.status_code,
                final_url=current,
                redirects=tuple(redirects),
                content_type=response.headers.get("content-type", "")[:200],
                content_length=int(length) if length.isdigit() else None,
                checked_at=time.time(),
            )

    @staticmethod
    def _failed(url: str, at: str, redirects: list[tuple[int, str]], kind: str, detail: str) -> LinkResult:
        return LinkResult(
            url=url, final_url=at, redirects=tuple(redirects), error=kind, detail=detail[:300],
            checked_at=time.time(),
        )

    async def _ask(self, url: str) -> httpx.Response:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        try:  # first, so a host that does not resolve reads as a DNS failure
            addresses = await _resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
        except socket.gaierror as exc:
            raise _Failure("dns", str(exc.strerror or exc)) from None
        if not self.config.allow_private_links and (why := _refusal(addresses)):
            raise _Refused(why)
        async with self.hosts[host]:
            try:
                async with asyncio.timeout(self.config.timeout):
                    response = await self.client.head(url)
                    if response.status_code in HEAD_REFUSED:
                        response = await self._get_headers(url)
                    return response
            except TimeoutError:
                raise _Failure("timeout", f"over {self.config.timeout:g} s") from None
            except httpx.TimeoutException:
                raise _Failure("timeout", f"over {self.config.timeout:g} s") from None
            except httpx.ConnectError as exc:
                raise _classify(exc) from None
            except (httpx.HTTPError, ssl.SSLError) as exc:
                raise _classify(exc) from None

    async def _get_headers(self, url: str) -> httpx.Response:
        """GET, reading at most ``max_body_bytes`` of the body: an endless body costs nothing."""
        async with self.client.stream("GET", url) as response:
            read = 0
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read >= self.config.max_body_bytes:
                    break
            return response


class _Failure(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail


def _classify(exc: Exception) -> _Failure:
    text = str(exc) or type(exc).__name__
    if text.startswith("[private] "):
        return _Failure("private", text.removeprefix("[private] "))  # a rebinding caught at connect
    if text.startswith("[dns] "):
        return _Failure("dns", text.removeprefix("[dns] "))
    if isinstance(exc, ssl.SSLError) or "SSL" in text or "certificate" in text.lower():
        return _Failure("tls", text)
    if "Name or service not known" in text or "getaddrinfo" in text or "nodename" in text:
        return _Failure("dns", text)
    if isinstance(exc, httpx.ConnectError):
        return _Failure("connect", text)
    return _Failure("protocol", text)


def _busiest_hosts_first(urls: Sequence[str], per_host: int) -> list[str]:
    """Each host's first ``per_host`` URLs before any host's next ones, busiest hosts first: a host
    with many links starts its second round as early as it can, which bounds the wall time."""
    counts = Counter(urlsplit(url).hostname for url in urls)
    seen: Counter[str | None] = Counter()
    keyed: list[tuple[int, int, int, str]] = []
    for url in urls:
        host = urlsplit(url).hostname
        keyed.append((seen[host] // per_host, -counts[host], len(keyed), url))
        seen[host] += 1
    return [url for *_, url in sorted(keyed)]


async def _fetch_all(
    urls: Sequence[str], config: CheckSettings, transport: httpx.AsyncBaseTransport | None
) -> dict[str, LinkResult]:
    """``config.concurrency`` workers take URLs off one queue: memory stays bounded for any count."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for url in _busiest_hosts_first(urls, config.per_host):
        queue.put_nowait(url)
    results: dict[str, LinkResult] = {}
    async with _client(config, transport) as client:
        fetcher = _Fetcher(client, config)

        async def work() -> None:
            while not queue.empty():
                url = queue.get_nowait()
                result = await fetcher.fetch(url)
                if result.error == "private":  # a rebinding caught at connect time reads the same
                    result = LinkResult(
                        url=url, error="private", detail=result.detail, checked_at=result.checked_at
                    )
                results[url] = result

        await asyncio.gather(*(work() for _ in range(min(config.concurrency, len(urls)))))
    return results


def fetch_links(
    urls: Iterable[str],
    config: CheckSettings,
    *,
    cache: LinkCache | None = None,
    fresh: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
) -> dict[str, LinkResult]:
    """One result per distinct URL: from the cache where it is still fresh, else fetched now.

    ``transport`` replaces the network (an ``httpx.MockTransport``); host names are still resolved.
    """
    wanted = list(dict.fromkeys(urls))
    if len(wanted) > config.max_links:
        raise BadInput(f"the issue has {len(wanted)} distinct links; [check] max_links is {config.max_links}")
    results: dict[str, LinkResult] = {}
    if cache is not None and not fresh:
        results.update(cache.get_many(wanted))
    missing = [url for url in wanted if url not in results]
    if missing:
        fetched = asyncio.run(_fetch_all(missing, config, transport))
        if cache is not None:
            cache.put_many(result for result in fetched.values() if result.error != "private")
        results.update(fetched)
    return results


def check_issue_links(loaded: LoadedIssue, settings: Settings, *, fresh: bool = False) -> list[Problem]:
    """The located link findings of one issue (``check --links``, ``send``, the worker)."""
    from newsletter.content.links import email_links, link_problems

    uses = email_links(loaded, settings.newsletter)
    cache = LinkCache.for_settings(settings.check)
    results = fetch_links((use.url for use in uses), settings.check, cache=cache, fresh=fresh)
    return link_problems(loaded, uses, results, image_max_bytes=settings.check.image_max_bytes)
