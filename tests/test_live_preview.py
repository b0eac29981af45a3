"""The live preview server for real: uvicorn on 127.0.0.1, a file watch, and server-sent events."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.live import LivePreview, force_dark
from newsletter.preview import SAMPLE_EMAIL
from newsletter.web.preview import bind
from tests.conftest import SAMPLE_ISSUES, clean_environment
from tests.issue_texts import EVERY_KIND
from tests.live_server import Running, events, live_server

LARGEST = max(SAMPLE_ISSUES, key=lambda path: path.stat().st_size)


@pytest.fixture
def issue(tmp_path: Path) -> Path:
    path = tmp_path / LARGEST.name
    shutil.copy(LARGEST, path)
    return path


@pytest.fixture
def server(issue: Path, settings) -> Iterator[Running]:
    with live_server(issue, settings) as running:
        time.sleep(0.3)  # let the watch start before a test saves the file
        yield running


def _save(path: Path, text: str) -> None:
    """Save the way many editors do: write a new file, rename it over the old one."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _next_render(stream: Iterator[tuple[str, dict[str, Any]]], after: int) -> dict[str, Any]:
    for name, data in stream:
        if name == "render" and data["version"] > after:
            return data
    raise AssertionError("the event stream ended")


def test_page_shows_both_widths_the_toggle_the_text_and_the_findings(server):
    page = httpx.get(server.url + "/", timeout=5)
    assert page.status_code == 200
    body = page.text
    assert 'id="phone"' in body and 'id="desktop"' in body
    assert "#phone { width:377px; }" in body and "#desktop { width:602px; }" in body  # 375/600 + border
    assert 'id="light"' in body and 'id="dark"' in body and "aria-pressed" in body
    assert '<pre id="text">' in body and 'id="findings"' in body
    assert 'new EventSource("/events")' in body


def test_state_is_the_filled_render_of_the_issue(server):
    state = httpx.get(server.url + "/state", timeout=5).json()
    assert state["version"] == state["good_version"] == 1
    assert state["broken"] == [] and state["findings"] == []
    assert SAMPLE_EMAIL in state["text"] and "%%" not in state["text"]
    light = httpx.get(server.url + "/email/light", timeout=5).text
    assert SAMPLE_EMAIL in light and '<base target="_blank">' in light
    assert "prefers-color-scheme: dark" in light
    dark = httpx.get(server.url + "/email/dark", timeout=5).text
    assert "prefers-color-scheme" not in dark and "color-scheme: dark" in dark
    assert httpx.get(server.url + "/email/sepia", timeout=5).status_code == 404


def test_a_save_pushes_a_render_event_with_the_new_content(server, issue):
    with httpx.stream("GET", server.url + "/events", timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = events(response.iter_lines())
        first = _next_render(stream, 0)
        text = issue.read_text(encoding="utf-8")
        subject = re.search(r"^subject: (.*)$", text, re.M)
        assert subject is not None
        _save(issue, text.replace(subject.group(0), "subject: Saved just now"))
        started = time.perf_counter()
        update = _next_render(stream, first["version"])
        assert time.perf_counter() - started < 5
    assert update["subject"] == "Saved just now"
    assert update["good_version"] == update["version"] > first["version"]
    assert update["broken"] == []


def test_a_broken_save_keeps_the_last_good_render_and_names_the_line(server, issue):
    good_html = httpx.get(server.url + "/email/light", timeout=5).text
    original = issue.read_text(encoding="utf-8")
    with httpx.stream("GET", server.url + "/events", timeout=10) as response:
        stream = events(response.iter_lines())
        first = _next_render(stream, 0)
        _save(issue, original + "sections: [\n")
        broken = _next_render(stream, first["version"])
        assert broken["good_version"] == first["version"]
        (problem,) = broken["broken"]
        assert problem["path"] == str(issue.resolve()) and problem["line"] > 100
        assert problem["where"] == f"{issue.resolve()}:{problem['line']}:{problem['column']}"
        # The last good render is still what the page shows and serves.
        assert broken["subject"] == first["subject"] and broken["text"] == first["text"]
        assert httpx.get(server.url + "/email/light", timeout=5).text == good_html
        _save(issue, original.replace("alt: ", "alt: Fixed ", 1))
        fixed = _next_render(stream, broken["version"])
    assert fixed["broken"] == [] and fixed["good_version"] == fixed["version"]


@pytest.mark.parametrize(
    "junk",
    [b"\x00\xff\xfe binary \x89PNG\r\n", b"title: x\n" * 200_000, "sections: \u0007".encode()],
    ids=["binary", "over-1-MB", "control-char"],
)
def test_a_hostile_save_is_a_broken_save_not_a_crash(server, issue, junk):
    with httpx.stream("GET", server.url + "/events", timeout=10) as response:
        stream = events(response.iter_lines())
        first = _next_render(stream, 0)
        issue.write_bytes(junk)
        broken = _next_render(stream, first["version"])
    assert broken["broken"] and broken["good_version"] == first["version"]
    assert httpx.get(server.url + "/source", timeout=5).status_code == 200


def test_watch_of_a_missing_file_is_bad_input(tmp_path):
    result = CliRunner().invoke(app, ["preview", str(tmp_path / "typo.yaml"), "--watch"])
    assert result.exit_code == 2 and "no such file" in result.output


def test_a_lint_failure_still_renders_and_lists_the_finding(tmp_path, settings):
    path = tmp_path / "2026-12-04.yaml"
    path.write_text(EVERY_KIND, encoding="utf-8")
    alt = "alt: Marchers holding candles"
    with (
        live_server(path, settings) as running,
        httpx.stream("GET", running.url + "/events", timeout=10) as response,
    ):
        time.sleep(0.3)
        stream = events(response.iter_lines())
        first = _next_render(stream, 0)
        assert first["findings"] == []
        _save(path, EVERY_KIND.replace(alt, 'alt: ""'))
        update = _next_render(stream, first["version"])
    assert update["good_version"] == update["version"]
    (finding,) = update["findings"]
    assert finding["severity"] == "error" and "alt text" in finding["message"]
    assert finding["line"] == EVERY_KIND[: EVERY_KIND.index(alt)].count("\n") + 1


def test_a_file_that_never_loaded_serves_a_placeholder(tmp_path, settings):
    path = tmp_path / "2026-12-04.yaml"
    path.write_text("title: [\n", encoding="utf-8")
    with live_server(path, settings) as running:
        state = httpx.get(running.url + "/state", timeout=5).json()
        assert state["good_version"] == 0 and state["broken"][0]["line"] >= 1
        assert "No good render yet" in httpx.get(running.url + "/email/light", timeout=5).text


def test_source_view_numbers_lines_and_escapes_them(server, issue):
    _save(issue, issue.read_text(encoding="utf-8") + "# <script>alert(1)</script>\n")
    body = httpx.get(server.url + "/source", timeout=5).text
    assert '<tr id="L1">' in body and "<script>alert" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_only_loopback_names_are_answered(server):
    assert httpx.get(server.url + "/state", timeout=5, headers={"Host": "localhost"}).status_code == 200
    for host in ("evil.example", "192.168.1.5", "rebind.example:8025"):
        refused = httpx.get(server.url + "/state", timeout=5, headers={"Host": host})
        assert refused.status_code == 400, host


def test_it_listens_on_127_0_0_1_only_and_moves_off_a_busy_port():
    busy = bind(0)
    try:
        port = busy.getsockname()[1]
        moved = bind(port)
        try:
            assert moved.getsockname()[0] == "127.0.0.1"
            assert moved.getsockname()[1] != port
        finally:
            moved.close()
        assert busy.getsockname()[0] == "127.0.0.1"
    finally:
        busy.close()


def test_force_dark_makes_the_dark_rules_unconditional():
    html = (
        '<meta name="color-scheme" content="light dark"><style>:root { color-scheme: light dark; }'
        "@media (prefers-color-scheme: dark) { .a { color: #fff } }"
        "@media ( prefers-color-scheme : light ) { .b { color: #000 } }</style>"
    )
    dark = force_dark(html)
    assert "@media all { .a" in dark and "@media not all { .b" in dark
    assert 'content="dark"' in dark and "color-scheme: dark;" in dark


def test_rebuild_of_a_vanished_file_is_a_broken_save(tmp_path, settings):
    path = tmp_path / LARGEST.name
    shutil.copy(LARGEST, path)
    live = LivePreview(path, settings)
    live.snapshot = live.build()
    path.unlink()
    gone = live.build()
    assert gone.good is live.snapshot.good and gone.broken
    assert "no such file" in gone.problems[0].message


def test_ctrl_c_stops_the_command_with_exit_0_even_with_a_page_open(issue):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "preview", str(issue), "--watch", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=issue.parent,
        env=clean_environment(),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert url is not None, line + (process.stderr.read() if process.stderr else "")
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url.group(0) + "state", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        with httpx.stream("GET", url.group(0) + "events", timeout=10) as response:
            next(events(response.iter_lines()))
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
