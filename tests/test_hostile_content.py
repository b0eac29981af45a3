"""Hostile input, from the issue "Hardening the foundation": every reproduction stays a regression test.

Issue files, segment expressions and the config come from many hands and scripts. Each case below
once ended in a hang, a traceback, a failure deep in the MJML compiler with no field named, or a bad
URL in an email. Where the fix is a limit, the error names the limit.
"""

from __future__ import annotations

import html.parser
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.dialects import sqlite
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.config import NewsletterSettings, Settings, load_settings
from newsletter.content import loader
from newsletter.content import model as m
from newsletter.content.loader import MAX_DEPTH, MAX_ISSUE_BYTES, IssueFileError, load_issue, load_issue_text
from newsletter.errors import ConfigError
from newsletter.render.email import render_issue
from newsletter.store import segments
from newsletter.store.models import Subscriber
from newsletter.store.segments import SegmentError, compile_segment, parse_segment
from newsletter.urls import http_url
from tests.issue_texts import EVERY_KIND

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def problems_of(path: Path) -> list[str]:
    with pytest.raises(IssueFileError) as caught:
        load_issue(path)
    assert caught.value.exit_code == 2
    return [str(problem) for problem in caught.value.problems]


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


# -- 1. aliases ("billion laughs") and the size cap ---------------------------------------------

BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
title: [*i,*i,*i,*i,*i,*i,*i,*i,*i]
"""


def test_billion_laughs_is_refused_before_any_expansion(write_issue, monkeypatch):
    """478 bytes that expanded to 9**10 strings: 110 s and 4 GB in ``newsletter check``."""
    assert len(BILLION_LAUGHS.encode()) < 500
    path = write_issue(BILLION_LAUGHS)

    def expanded(*args, **kwargs):
        raise AssertionError("the node tree was built from a document with aliases")

    monkeypatch.setattr(loader._Builder, "build", expanded)
    started = time.perf_counter()
    assert problems_of(path) == [
        f"{path}:2:8: b[0]: aliases (*name) are not allowed in issue files; write the value out"
    ]
    assert time.perf_counter() - started < 2


def test_billion_laughs_through_the_cli_exits_2_at_once(write_issue):
    path = write_issue(BILLION_LAUGHS)
    started = time.perf_counter()
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path}:2:8" in result.output and "aliases" in result.output
    assert time.perf_counter() - started < 10


def test_merge_keys_are_aliases_too(write_issue):
    text = EVERY_KIND.replace(
        "        quote: {text:", "        defaults: &defaults {source: AP}\n        quote: {text:"
    ).replace("        source: Reuters\n", "        <<: *defaults\n")
    (problem,) = problems_of(write_issue(text))
    assert f":{line_of(text, '<<: *defaults')}:13: sections[2].stories[0]" in problem
    assert "aliases (*name) are not allowed" in problem


def test_an_anchor_without_alias_is_harmless(write_issue):
    issue = load_issue(write_issue(EVERY_KIND.replace("kicker: Breaking", "kicker: &k Breaking"))).issue
    assert issue.kicker == "Breaking"


def test_oversized_file_is_refused_before_parsing(write_issue, monkeypatch):
    text = EVERY_KIND + "# " + "x" * MAX_ISSUE_BYTES + "\n"
    path = write_issue(text)

    def parsed(*args, **kwargs):
        raise AssertionError("an oversized file was parsed")

    monkeypatch.setattr(loader, "_compose", parsed)
    limit = "the file is larger than 1 MiB (1,048,576 bytes), the limit for an issue file"
    assert problems_of(path) == [f"{path}:1:1: {limit}"]
    with pytest.raises(IssueFileError, match=r"1 MiB \(1,048,576 bytes\), the limit"):
        load_issue_text(text, "inline.yaml")


def test_a_huge_file_is_not_read_whole(tmp_path):
    """``/dev/zero`` or a mistaken 64 MiB dump: only the first MiB and a byte are ever read."""
    path = tmp_path / "2026-11-27.yaml"
    with path.open("wb") as file:
        file.truncate(64 * 1024 * 1024)
    (problem,) = problems_of(path)
    assert "larger than 1 MiB" in problem


def test_a_file_of_exactly_the_limit_loads(write_issue):
    padding = MAX_ISSUE_BYTES - len(EVERY_KIND.encode()) - len("#\n")
    path = write_issue(EVERY_KIND + "#" + "x" * padding + "\n")
    assert path.stat().st_size == MAX_ISSUE_BYTES
    assert load_issue(path).issue.title == "Ceasefire broken again"


# -- 2. nesting depth: issue files ----------------------------------------------------------------


def test_flow_nesting_900_deep_is_refused_at_the_first_level_too_deep(write_issue):
    """It used to end in a RecursionError traceback; now composing stops at level MAX_DEPTH + 1."""
    path = write_issue("title: " + "[" * 900 + "]" * 900 + "\n")
    field = "title" + "[0]" * (MAX_DEPTH - 1)
    column = len("title: ") + MAX_DEPTH  # the root mapping is level 1, title's list level 2
    assert problems_of(path) == [
        f"{path}:1:{column}: {field}: nested more than 20 levels deep (the limit for an issue file)"
    ]


def test_block_nesting_900_deep_is_refused_at_its_line(write_issue):
    text = "title:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(900))
    (problem,) = problems_of(write_issue(text))
    # Level 1 is the root, level 2 the mapping under title, so level 21 starts at key k19.
    assert f":{line_of(text, ' k19:')}:21: title.k0." in problem
    assert ".k18: nested more than 20 levels deep (the limit for an issue file)" in problem


def test_nesting_up_to_the_limit_is_only_a_schema_question(write_issue):
    text = EVERY_KIND.replace("title: Ceasefire broken again", "title: " + "[" * 19 + "]" * 19)
    (problem,) = problems_of(write_issue(text))
    assert "title: Input should be a valid string" in problem


def test_deep_file_through_the_cli_exits_2_without_traceback(write_issue):
    path = write_issue("title: " + "{a: " * 900 + "1" + "}" * 900 + "\n")
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2, result.output
    assert "nested more than 20 levels deep" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1" * 5000, "a number may have at most 100 characters (the limit)"),  # int() raised ValueError
        (":".join(["1"] * 200_000), "a number may have at most 100 characters (the limit)"),  # quadratic
        ("!!bool maybe", "'maybe' is not a valid bool"),  # KeyError inside PyYAML
        ("!!int twelve", "'twelve' is not a valid int"),
        ("2026-13-45", "'2026-13-45' is not a valid timestamp"),  # ValueError inside PyYAML
        ("!custom 8", "'8' is not a valid !custom"),
    ],
    ids=["5000-digits", "sexagesimal", "bool", "int", "date", "custom-tag"],
)
def test_scalars_pyyaml_cannot_build_are_located_errors(write_issue, value, message):
    """Found while hardening: these raised from inside PyYAML's constructors, past our error handling."""
    text = EVERY_KIND.replace("    value: 8\n", f"    value: {value}\n")
    path = write_issue(text)
    started = time.perf_counter()
    assert problems_of(path) == [f"{path}:{line_of(text, '    value: ')}:12: sections[6].value: {message}"]
    assert time.perf_counter() - started < 2


# -- 2. nesting depth and length: segment expressions ---------------------------------------------


@pytest.mark.parametrize(
    ("source", "position"),
    [
        ("(" * 350 + "tag:a" + ")" * 350, segments.MAX_DEPTH + 1),
        ("not " * 400 + "tag:a", 4 * segments.MAX_DEPTH + 1),
        ("tag:a and " + "(not " * 200 + "tag:b" + ")" * 200, 11 + 5 * (segments.MAX_DEPTH // 2)),
    ],
    ids=["350-parentheses", "400-nots", "mixed"],
)
def test_deep_segments_are_refused_at_the_position_too_deep(source, position):
    with pytest.raises(SegmentError) as caught:
        parse_segment(source)
    message = str(caught.value)
    assert f"nested more than {segments.MAX_DEPTH} levels deep" in message
    assert f"at position {position}\n" in message
    shown, caret = message.splitlines()[1:]
    assert len(shown) < 140 and caret.strip() == "^"  # a window of the expression, not all of it
    assert shown[caret.index("^")] in "(n"


def test_5000_nots_hit_the_length_limit_first():
    with pytest.raises(SegmentError, match=r"is 20,005 characters long; the limit is 2,000"):
        parse_segment("not " * 5000 + "tag:a")


def test_segments_at_the_depth_limit_parse():
    depth = segments.MAX_DEPTH
    assert parse_segment("not " * depth + "tag:a") is not None
    assert parse_segment("(" * depth + "tag:a" + ")" * depth) == segments.TagIs("a")


def _flat(operator: str, limit: int = segments.MAX_LENGTH) -> str:
    """The longest ``tag:t0 or tag:t1 or ...`` within the length limit."""
    parts: list[str] = []
    while len(f" {operator} ".join([*parts, f"tag:t{len(parts)}"])) <= limit:
        parts.append(f"tag:t{len(parts)}")
    return f" {operator} ".join(parts)


@pytest.mark.parametrize("operator", ["or", "and"])
def test_the_longest_flat_segment_compiles_on_sqlite(operator):
    source = _flat(operator)
    assert len(source) <= segments.MAX_LENGTH and source.count("tag:") > 150
    sql = _sql(source)
    assert all(f"'t{index}'" in sql for index in range(source.count("tag:")))
    # ...in one subquery: PostgreSQL took 11 s to plan 120 and-ed EXISTS, one per tag.
    assert sql.count("SELECT") <= 3


def _sql(source: str) -> str:
    query = select(Subscriber.id).where(compile_segment(source))
    return str(query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))


@pytest.mark.parametrize(
    "source",
    [
        " and ".join(f"not tag:t{index}" for index in range(120)),
        " and ".join(f"not not tag:t{index}" for index in range(100)),
        "tag:x and " + "(tag:a and " * segments.MAX_DEPTH + "tag:b" + ")" * segments.MAX_DEPTH,
    ],
    ids=["and-not", "double-not", "nested-and"],
)
def test_tag_lists_compile_to_one_subquery_whatever_their_spelling(source):
    assert _sql(source).count("SELECT") <= 3


def test_the_longest_flat_segment_of_all_compiles_on_sqlite():
    source = " or ".join(["all"] * ((segments.MAX_LENGTH + 4) // 7))
    assert len(source) <= segments.MAX_LENGTH
    assert str(compile_segment(source).compile(dialect=sqlite.dialect()))


# -- 3. control characters --------------------------------------------------------------------

CONTROL_ESCAPES = [
    ("\\x01", "control character U+0001"),
    ("\\0", "control character U+0000"),
    ("\\x00", "control character U+0000"),
    ("\\e", "control character U+001B"),
    ("\\r", "control character U+000D"),
    ("\\x7f", "control character U+007F"),
    ("\\x80", "control character U+0080"),
    ("\\N", "control character U+0085"),
    ("\\x9f", "control character U+009F"),
    ("\\ud800", "lone surrogate U+D800"),
    ("\\udfff", "lone surrogate U+DFFF"),
    ("\\uFFFE", "Unicode non-character U+FFFE"),
    ("\\uffff", "Unicode non-character U+FFFF"),
    ("\\uFDD0", "Unicode non-character U+FDD0"),
    ("\\U0010FFFF", "Unicode non-character U+10FFFF"),
]


@pytest.mark.parametrize(("escape", "name"), CONTROL_ESCAPES, ids=[e for e, _ in CONTROL_ESCAPES])
def test_control_character_escapes_are_refused_with_their_field(write_issue, escape, name):
    """They used to reach the MJML compiler, which failed without naming the field."""
    text = EVERY_KIND.replace("source: Reuters", f'source: "Reu{escape}ters"')
    path = write_issue(text)
    line = line_of(text, 'source: "Reu')
    assert problems_of(path) == [
        f"{path}:{line}:17: sections[2].stories[0].source: {name} (character 4 of the text) "
        f"is not allowed in an issue file" + ("; only tab and newline are" if "control" in name else "")
    ]


def test_every_field_and_list_item_is_checked(write_issue):
    text = EVERY_KIND.replace('subject: "Weekly:', 'subject: "\\x02Weekly:').replace(
        "- Suspend all military assistance", '- "Suspend\\x1f all military assistance"'
    )
    path = write_issue(text)
    problems = problems_of(path)
    assert [problem.split(": ")[1] for problem in problems] == ["subject", "sections[1].actions.items[1]"]


def test_control_characters_in_keys_are_refused(write_issue):
    text = EVERY_KIND.replace("source: Reuters", '"sour\\x01ce": Reuters')
    path = write_issue(text)
    line = line_of(text, '"sour')
    assert problems_of(path) == [
        f"{path}:{line}:9: sections[2].stories[0]: key 'sour\\x01ce': control character U+0001 "
        "(character 5 of the text) is not allowed in an issue file; only tab and newline are"
    ]


def test_tab_and_newline_are_fine(write_issue):
    text = EVERY_KIND.replace("source: Reuters", 'source: "Reu\\tters\\nwire"')
    story = load_issue(write_issue(text)).issue.sections[2].stories[0]  # type: ignore[union-attr]
    assert story.source == "Reu\tters\nwire"


@pytest.mark.parametrize("raw", ["\x01", "\x7f", "\x9f", "\ufffe"])
def test_raw_control_characters_are_located(write_issue, raw):
    text = EVERY_KIND.replace("source: Reuters", f"source: Reu{raw}ters")
    path = write_issue(text)
    line = line_of(text, "source: Reu")
    assert problems_of(path) == [
        f"{path}:{line}:20: YAML error: character U+{ord(raw):04X} is not allowed in YAML text"
    ]


# -- 4. one URL rule for issue and config URLs --------------------------------------------------


class _Tags(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


ACCEPTED_URLS = [
    ("https://news.example.com/a b", "https://news.example.com/a%20b"),
    ("  https://news.example.com/x?q=a b c  ", "https://news.example.com/x?q=a%20b%20c"),
    ("\u00a0https://news.example.com/\u3000", "https://news.example.com/"),
    ("https://news.example.com:8443/p", "https://news.example.com:8443/p"),
    ("http://[::1]:8000/", "http://[::1]:8000/"),
    ("https://fr.example.org/caf\u00e9", "https://fr.example.org/caf\u00e9"),
    ("https://news.example.com/a%20b", "https://news.example.com/a%20b"),
]
REFUSED_URLS = [
    ("javascript:alert(1)", "must be an absolute http(s) URL"),
    ("data:image/png;base64,AAAA", "must be an absolute http(s) URL"),
    ("//news.example.com/x", "must be an absolute http(s) URL"),
    ("https:///x", "must be an absolute http(s) URL"),
    ("http://[::1/x", "must be an absolute http(s) URL"),
    ("https://news.example.com/a\tb", "must not contain white space or control characters (U+0009"),
    ("https://news.example.com/a\nb", "must not contain white space or control characters (U+000A"),
    ("https://news.example.com/a\u00a0b", "must not contain white space or control characters (U+00A0"),
    ("https://news.example.com/a\u3000b", "must not contain white space or control characters (U+3000"),
    ("https://news.example.com/\u200b", "must not contain white space or control characters (U+200B"),
    ("https://news.example.com/\u202egpj.exe", "must not contain white space or control characters"),
    ("https://news.example.com/\x00", "must not contain white space or control characters (U+0000"),
    ("https://news.example.com/\x7f", "must not contain white space or control characters (U+007F"),
    ("https://news example.com/", "must not have spaces in the host"),
    ("http://:80/", "must name a host"),
    ("http://user@/", "must name a host"),
    ("https://news.example.com:abc/", "must have a numeric port from 0 to 65535"),
    ("https://news.example.com:+80/", "must have a numeric port from 0 to 65535"),
    ("https://news.example.com:99999/", "must have a numeric port from 0 to 65535"),
    ("https://news.example.com:" + "9" * 5000 + "/", "must have a numeric port from 0 to 65535"),
    ("https://t.example.net/?u=%%email%%", "must use '%' only to start a percent-escape like %20"),
]


@pytest.mark.parametrize(("url", "expected"), ACCEPTED_URLS)
def test_one_url_rule_accepts_and_cleans(url, expected):
    assert http_url(url) == expected
    assert m.Link(url=url).url == expected.strip()
    assert NewsletterSettings(logo_url=url).logo_url == expected
    assert NewsletterSettings(base_url=url).base_url == expected.rstrip("/")


@pytest.mark.parametrize(("url", "message"), REFUSED_URLS)
def test_one_url_rule_refuses_in_issues_and_config(url, message):
    with pytest.raises(ValueError) as refused:
        http_url(url)
    assert str(refused.value).startswith(message)
    for build in (lambda: m.Link(url=url), lambda: NewsletterSettings(logo_url=url)):
        with pytest.raises(ValidationError) as caught:
            build()
        assert message in str(caught.value)


def test_every_url_key_of_the_config_uses_the_rule():
    """Any ``*_url`` key of any section, now or added later, refuses what the shared rule refuses."""
    checked = []
    for section, field in Settings.model_fields.items():
        model = field.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        for name in model.model_fields:
            if name.endswith("_url"):
                for bad in ("javascript:alert(1)", "https://cdn.example.org:x/"):
                    with pytest.raises(
                        ValidationError, match=r"must (be an absolute http|have a numeric port)"
                    ):
                        model(**{name: bad})
                checked.append(f"{section}.{name}")
    assert {"newsletter.base_url", "newsletter.logo_url"} <= set(checked)


def test_javascript_logo_in_the_config_file_is_a_config_error(tmp_path):
    path = tmp_path / "newsletter.toml"
    path.write_text('[newsletter]\nlogo_url = "javascript:alert(document.cookie)"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert caught.value.exit_code == 2
    assert f"{path}: newsletter.logo_url:" in str(caught.value)
    assert "must be an absolute http(s) URL" in str(caught.value)


def test_issue_url_with_spaces_is_emitted_encoded(write_issue, settings):
    text = EVERY_KIND.replace("https://news.example.com/shelling", " https://news.example.com/the shelling ")
    loaded = load_issue(write_issue(text))
    story = loaded.issue.sections[2].stories[0]  # type: ignore[union-attr]
    assert story.links[0].url == "https://news.example.com/the%20shelling"
    parser = _Tags()
    parser.feed(render_issue(loaded.issue, settings).html)
    assert "https://news.example.com/the%20shelling" in [attrs.get("href") for _, attrs in parser.tags]


def test_markdown_links_follow_the_same_rule(write_issue):
    text = EVERY_KIND.replace("https://www.example.org/source", "https://www.example.org:abc/source")
    path = write_issue(text)
    (problem,) = problems_of(path)
    assert "sections[1].body: link must have a numeric port from 0 to 65535" in problem


def test_a_logo_url_cannot_break_out_of_its_attribute(write_issue):
    """Quotes and angle brackets are legal in a URL's query; the render must still escape them."""
    logo = "https://cdn.example.org/logo.png?a=\"><script>alert(1)</script><img/src=x/onerror=alert(1)>'"
    settings = NewsletterSettings(logo_url=logo)
    parser = _Tags()
    parser.feed(render_issue(load_issue(write_issue(EVERY_KIND)).issue, settings).html)
    assert "script" not in [tag for tag, _ in parser.tags]
    assert next(attrs.get("src") for tag, attrs in parser.tags if tag == "img") == logo
    assert all("onerror" not in attrs for _, attrs in parser.tags)


def test_config_and_content_model_import_neither_render_nor_store():
    """config.py takes the URL rule from newsletter.urls; content must stay below render and store."""
    code = (
        "import sys, newsletter.config, newsletter.content.model, newsletter.content.loader\n"
        "bad = sorted(n for n in sys.modules if n.startswith(('newsletter.render', 'newsletter.store')))\n"
        "print(bad)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "[]"


# -- 5. a config file that is not UTF-8 -------------------------------------------------------


def test_latin1_config_is_a_config_error_naming_file_and_byte(tmp_path):
    path = tmp_path / "newsletter.toml"
    path.write_bytes('[newsletter]\nname = "Caf\xe9 Weekly"\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert caught.value.exit_code == 2
    assert str(caught.value) == (f"{path}: not UTF-8 text (byte 24, on line 2, is 0xe9); save it as UTF-8")


def test_latin1_config_through_the_cli_exits_2(tmp_path, write_issue):
    path = tmp_path / "newsletter.toml"
    path.write_bytes('[newsletter]\nname = "Caf\xe9 Weekly"\n'.encode("latin-1"))
    result = runner.invoke(app, ["check", "--config", str(path), str(write_issue(EVERY_KIND))])
    assert result.exit_code == 2, result.output
    assert "not UTF-8 text (byte 24" in result.output
