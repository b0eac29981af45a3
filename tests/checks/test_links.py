"""``check --links``: every URL of the email asked of a loopback site, each case told apart."""

from __future__ import annotations

import re
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from newsletter.checks import links as fetcher
from newsletter.checks.links import check_issue_links, fetch_links
from newsletter.cli import app
from newsletter.config import CheckSettings, NewsletterSettings, Settings
from newsletter.content.links import (
    LinkResult,
    address_refusal,
    email_links,
    link_problems,
    registrable_domain,
    verdicts,
)
from newsletter.content.loader import LoadedIssue, load_issue_text
from tests.checks.link_server import LinkSite
from tests.conftest import FIXTURE_ISSUES_DIR
from tests.loopback import connections_waiting, serve, silent_listener

HEADER = """\
title: Links
date: 2026-11-27
subject: Links
preheader: Every kind of link
sections:
"""


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[str, LinkSite]]:
    links = LinkSite()
    with serve(links.app) as base:
        try:
            yield base, links
        finally:
            links.release()


def issue_with(urls: dict[str, str], *, images: dict[str, str] | None = None) -> LoadedIssue:
    """An issue with one headline per URL (in order) and one photo per image."""
    lines = [HEADER, "  - kind: headlines\n    title: Links\n    items:\n"]
    for text, url in urls.items():
        lines.append(f"      - text: {text}\n        url: {url}\n")
    if images:
        lines.append("  - kind: photos\n    title: Photos\n    photos:\n")
        for alt, src in images.items():
            lines.append(f"      - src: {src}\n        alt: {alt}\n        caption: c\n        credit: c\n")
    return load_issue_text("".join(lines), "links.yaml")


def settings_for(tmp_path: Path, **check: object) -> Settings:
    options: dict[str, object] = {
        "allow_private_links": True, "timeout": 1.0, "cache_file": tmp_path / "links.json", **check
    }
    return Settings(
        newsletter=NewsletterSettings(base_url="https://news.example.org"),
        check=CheckSettings.model_validate(options),
    )


def findings(loaded: LoadedIssue, settings: Settings, **kwargs: bool) -> list[tuple[str, int, str, str]]:
    problems = [p for p in check_issue_links(loaded, settings, **kwargs) if p.field]  # the issue's own
    return [(p.severity, p.line, p.field, p.message) for p in problems]


def test_each_case_is_an_error_a_warning_or_fine_where_it_was_written(site, tmp_path: Path) -> None:
    base, links = site
    loaded = issue_with(
        {
            "fine": f"{base}/ok",
            "chain": f"{base}/chain/3",
            "temporary": f"{base}/found",
            "away": f"{base}/away",
            "missing": f"{base}/missing",
            "broken": f"{base}/broken",
            "no head": f"{base}/no-head",
            "loop": f"{base}/loop-a",
            "endless": f"{base}/endless-chain/0",
        },
        images={"png": f"{base}/image.png", "page": f"{base}/page.png", "huge": f"{base}/huge.png"},
    )
    found = findings(loaded, settings_for(tmp_path))
    by_field = {}
    for severity, _, field, message in found:
        by_field.setdefault(field, []).append((severity, message))
    items = "sections[0].items"
    assert f"{items}[0].url" not in by_field  # fine
    assert by_field[f"{items}[1].url"] == [
        ("warning", f"{base}/chain/3 moved permanently (301); use {base}/ok instead")
    ]
    assert f"{items}[2].url" not in by_field  # a temporary redirect on the same site is fine
    assert by_field[f"{items}[3].url"] == [
        ("warning", f"{base}/away redirects to another site, http://localhost:{base.rsplit(':', 1)[1]}/ok "
         "(moved, or a parked or expired domain?)")
    ]
    assert by_field[f"{items}[4].url"] == [("error", f"{base}/missing answers 404")]
    assert by_field[f"{items}[5].url"] == [("error", f"{base}/broken answers 500")]
    assert f"{items}[6].url" not in by_field  # HEAD refused, GET answered: the endless body is not read
    assert links.methods["GET /no-head"] == 1
    assert by_field[f"{items}[7].url"] == [("error", f"{base}/loop-a: redirect loop: back to {base}/loop-a")]
    assert by_field[f"{items}[8].url"] == [
        ("error", f"{base}/endless-chain/0: too many redirects: more than 10")
    ]
    assert links.hits["/endless-chain/10"] == 1 and links.hits["/endless-chain/11"] == 0
    photos = "sections[1].photos"
    assert f"{photos}[0].src" not in by_field
    assert by_field[f"{photos}[1].src"] == [("warning", f"image {base}/page.png is text/html, not an image")]
    assert by_field[f"{photos}[2].src"] == [
        ("warning", f"image {base}/huge.png is 2.0 MB; keep images under 1 MB")
    ]
    lines = [line for _, line, _, _ in found]
    assert lines == sorted(lines) and lines[0] == 12  # located at the URL's own line, in file order


def test_a_slow_link_is_a_timeout_and_the_others_do_not_wait_for_it(site, tmp_path: Path) -> None:
    base, _ = site
    loaded = issue_with({"slow": f"{base}/slow", "fine": f"{base}/ok"})
    started = time.monotonic()
    found = findings(loaded, settings_for(tmp_path, timeout=0.3))
    assert time.monotonic() - started < 2
    assert found == [("error", 10, "sections[0].items[0].url", f"{base}/slow: no answer in time: over 0.3 s")]


def test_dns_failure_and_refused_connection_are_errors(tmp_path: Path) -> None:
    with silent_listener() as (port, sock):
        sock.close()  # nothing listens there any more
        loaded = issue_with({"nowhere": "https://no-such-host.example.net/x", "closed": f"http://127.0.0.1:{port}/"})
        found = findings(loaded, settings_for(tmp_path))
    assert found[0][:3] == ("error", 10, "sections[0].items[0].url")
    assert "its host does not resolve" in found[0][3]
    assert found[1][:3] == ("error", 12, "sections[0].items[1].url")
    assert "cannot connect" in found[1][3]


def test_a_second_run_makes_no_request_and_fresh_asks_again(site, tmp_path: Path) -> None:
    base, links = site
    loaded = issue_with({"cached": f"{base}/ok/cached", "bad": f"{base}/missing?cached"})
    settings = settings_for(tmp_path)
    first = findings(loaded, settings)
    assert links.hits["/ok/cached"] == 1
    assert findings(loaded, settings) == first
    assert links.hits["/ok/cached"] == 1 and links.hits["/missing"] >= 1
    findings(loaded, settings, fresh=True)
    assert links.hits["/ok/cached"] == 2


def test_a_bad_answer_is_cached_an_hour_a_good_one_a_day(tmp_path: Path) -> None:
    from newsletter.checks.cache import LinkCache

    cache = LinkCache(tmp_path / "c.json", good_seconds=86_400, bad_seconds=3_600)
    now = time.time()
    cache.put_many([
        LinkResult("https://a.example/", status=200, checked_at=now - 7_200),
        LinkResult("https://b.example/", status=404, checked_at=now - 7_200),
        LinkResult("https://c.example/", status=404, checked_at=now - 60),
    ])
    again = LinkCache(tmp_path / "c.json", good_seconds=86_400, bad_seconds=3_600)
    assert set(again.get_many(["https://a.example/", "https://b.example/", "https://c.example/"])) == {
        "https://a.example/", "https://c.example/"
    }


def test_a_damaged_cache_file_is_ignored(tmp_path: Path) -> None:
    from newsletter.checks.cache import LinkCache

    path = tmp_path / "c.json"
    for text in ("{not json", '{"version": 1, "entries": [{"nourl": 1}]}', "[]", "\0\1\2"):
        path.write_text(text, encoding="utf-8")
        assert LinkCache(path, good_seconds=10, bad_seconds=10).get_many(["https://a.example/"]) == {}


def test_private_addresses_are_reported_and_never_asked(tmp_path: Path) -> None:
    with silent_listener() as (port, sock):
        urls = {
            "loopback": f"http://127.0.0.1:{port}/admin",
            "name": f"http://localhost:{port}/",
            "other loopback": f"http://127.0.0.2:{port}/",
            "mapped": f"http://[::ffff:127.0.0.1]:{port}/",
        }
        found = findings(issue_with(urls), settings_for(tmp_path, allow_private_links=False))
        assert connections_waiting(sock) == 0
    assert [f[0] for f in found] == ["error"] * 4
    assert all("not fetched: its host is a loopback address" in f[3] for f in found), found


def test_a_name_that_resolves_elsewhere_at_connect_time_is_still_refused(monkeypatch, tmp_path: Path) -> None:
    """DNS rebinding: the first answer is public, the connection's own look-up is loopback."""
    real = fetcher._resolve
    answers = iter([["93.184.215.14"]])

    async def rebinding(host: str, port: int) -> list[str]:
        try:
            return next(answers)
        except StopIteration:
            return await real("127.0.0.1", port)

    monkeypatch.setattr(fetcher, "_resolve", rebinding)
    with silent_listener() as (port, sock):
        results = fetch_links([f"http://rebind.example:{port}/"], CheckSettings(timeout=1))
        assert connections_waiting(sock) == 0
    assert results[f"http://rebind.example:{port}/"].error == "private"


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("192.168.0.1", "a private address"),
        ("172.16.5.4", "a private address"),
        ("169.254.169.254", "a link-local (cloud metadata) address"),
        ("fe80::1", "a link-local (cloud metadata) address"),
        ("fd00:ec2::254", "a private address"),
        ("::ffff:10.0.0.1", "a private address"),
        ("100.64.0.1", "a reserved address"),
        ("0.0.0.0", "a loopback address"),
        ("224.0.0.1", "a reserved address"),
        ("93.184.215.14", ""),
        ("2606:4700::1111", ""),
    ],
)
def test_which_addresses_are_never_fetched(address: str, why: str) -> None:
    assert address_refusal(address) == why


def test_registrable_domains_come_from_the_bundled_suffix_list() -> None:
    assert registrable_domain("https://www.bbc.co.uk/news") == "bbc.co.uk"
    assert registrable_domain("https://a.b.example.com/") == "example.com"
    assert registrable_domain("http://127.0.0.1:8000/") == "127.0.0.1"
    same = LinkResult("https://example.com/a", status=200, final_url="https://www.example.com/b",
                      redirects=((302, "https://www.example.com/b"),))
    assert verdicts(same, "link") == []


def test_every_url_of_the_email_is_asked_the_logo_and_archive_link_too() -> None:
    loaded = load_issue_text((FIXTURE_ISSUES_DIR / "2026-11-20.yaml").read_text(encoding="utf-8"), "x.yaml")
    settings = NewsletterSettings(base_url="https://news.example.org", logo_url="https://cdn.example.org/l.png")
    uses = email_links(loaded, settings)
    assert uses[-2].url == "https://cdn.example.org/l.png" and uses[-2].kind == "image"
    assert uses[-1].url == "https://news.example.org/issues/2026-11-20/"
    text = (FIXTURE_ISSUES_DIR / "2026-11-20.yaml").read_text(encoding="utf-8")
    written = re.findall(r"https?://[^\s\"')>\]]+", text)
    assert sorted(use.url for use in uses[:-2]) == sorted(written)  # every one, each where it is used
    assert {use.kind for use in uses} == {"link", "image"}


def test_markdown_links_inside_text_are_asked(tmp_path: Path) -> None:
    text = HEADER + (
        "  - kind: statement\n    title: S\n    body: See [the report](https://r.example.org/a) and"
        " <https://r.example.org/b>.\n"
    )
    loaded = load_issue_text(text, "x.yaml")
    uses = email_links(loaded, NewsletterSettings())
    assert [(u.url, u.at) for u in uses[:2]] == [
        ("https://r.example.org/a", ("sections", 0, "body")),
        ("https://r.example.org/b", ("sections", 0, "body")),
    ]


def test_five_thousand_links_take_bounded_time_and_memory(tmp_path: Path) -> None:
    """The whole pipeline (issue -> uses -> queue -> results -> findings -> cache) for 5,000 links;
    the answers come from an in-process transport, so the figure is ours, not a server's."""
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.method)
        n = int(request.url.path.rsplit("/", 1)[1])
        return httpx.Response(404 if n % 1000 == 0 else 200, headers={"content-type": "text/html"})

    loaded = issue_with({f"link {n}": f"http://127.0.0.1:9/ok/{n}" for n in range(5_000)})
    settings = settings_for(tmp_path)
    tracemalloc.start()
    started = time.monotonic()
    try:
        uses = email_links(loaded, settings.newsletter)
        transport = httpx.MockTransport(answer)
        results = fetch_links([use.url for use in uses], settings.check, transport=transport)
        problems = link_problems(loaded, uses, results)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.monotonic() - started
    assert len(asked) == 5_000
    broken = [f"sections[0].items[{n}].url" for n in range(0, 5_000, 1000)]
    assert [p.field for p in problems if p.field] == broken
    assert elapsed < 30, elapsed
    assert peak < 64 * 1024 * 1024, peak


def test_more_links_than_the_limit_is_bad_input(tmp_path: Path) -> None:
    from newsletter.errors import BadInput

    with pytest.raises(BadInput, match="max_links is 3"):
        fetch_links([f"https://x.example/{n}" for n in range(4)], CheckSettings(max_links=3))


def test_check_links_cli_prints_located_findings_and_fails(site, tmp_path: Path, monkeypatch) -> None:
    base, _ = site
    issue = tmp_path / "2026-11-27.yaml"
    issue.write_text(
        HEADER + "  - kind: headlines\n    title: L\n    items:\n"
        f"      - text: gone\n        url: {base}/missing\n",
        encoding="utf-8",
    )
    config = tmp_path / "newsletter.toml"
    config.write_text(
        f'[newsletter]\nbase_url = "{base}"\n[check]\nallow_private_links = true\n'
        f'cache_file = "{tmp_path / "links.json"}"\n',
        encoding="utf-8",
    )
    runner = CliRunner()
    done = runner.invoke(app, ["check", str(issue), "--links", "--config", str(config)])
    assert done.exit_code == 1, done.output
    assert f"{issue}:10:9: sections[0].items[0].url: {base}/missing answers 404" in done.output
    plain = runner.invoke(app, ["check", str(issue), "--config", str(config)])
    assert plain.exit_code == 0, plain.output
    usage = runner.invoke(app, ["check", str(issue), "--fresh", "--config", str(config)])
    assert usage.exit_code == 2
