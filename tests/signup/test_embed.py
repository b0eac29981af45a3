"""``newsletter web form``: the snippet another site pastes, and that it really signs up."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.web.signup import FIELDS
from tests.signup.conftest import BASE_URL, Signup


class _Fields(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()
        self.labels: set[str] = set()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "input" and values.get("name"):
            self.names.add(str(values["name"]))
            if values.get("id"):
                self.ids.add(str(values["id"]))
        if tag == "label" and values.get("for"):
            self.labels.add(str(values["for"]))


def test_web_form_prints_a_snippet_posting_to_base_url(tmp_path: Path) -> None:
    config = tmp_path / "newsletter.toml"
    config.write_text(
        f'[newsletter]\nbase_url = "{BASE_URL}"\nname = "The <Weekly> Brief"\n'
        '[web]\ntopics = [{ tag = "press", label = "Press & releases" }]\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["web", "form", "--config", str(config)])
    assert result.exit_code == 0, result.output
    snippet = result.output
    assert f'action="{BASE_URL}/subscribe"' in snippet and 'method="post"' in snippet
    assert f'src="{BASE_URL}/static/altcha.min.js"' in snippet
    assert f'challenge="{BASE_URL}/altcha/challenge"' in snippet
    assert "The &lt;Weekly&gt; Brief" in snippet and "Press &amp; releases" in snippet
    parsed = _Fields()
    parsed.feed(snippet)
    assert parsed.names <= FIELDS and {"email", "name", "topics", "website"} <= parsed.names
    assert parsed.ids <= parsed.labels  # every visible field has its label
    assert not re.search(r"<script>(?!</script>)", snippet)  # no inline script


def test_bad_config_is_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "newsletter.toml"
    config.write_text('[web]\nlimit_per_ip = "often"\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["web", "form", "--config", str(config)])
    assert result.exit_code == 2 and "limit_per_ip" in result.output


def test_challenge_works_cross_origin(signup: Signup) -> None:
    answer = signup.client.get("/altcha/challenge", headers={"origin": "https://elsewhere.example"})
    assert answer.headers["access-control-allow-origin"] == "*"
    assert answer.headers["cache-control"] == "no-store"
    embedded = signup.post(email="from.elsewhere@example.org", topics=["press"],
                           **{"website": ""})
    assert embedded.status_code == 200
    assert [str(m["To"]) for m in signup.messages()] == ["from.elsewhere@example.org"]
