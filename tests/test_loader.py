"""Loading issue files: the typed model, and every error located as path:line:column: field."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml

from newsletter.content.loader import MAX_DEPTH, MAX_ISSUE_BYTES, IssueFileError, load_issue, load_issue_text
from newsletter.content.model import FigureSection, StoriesSection
from tests.conftest import SAMPLE_ISSUES
from tests.issue_texts import EVERY_KIND


def problems_of(path) -> list[str]:
    with pytest.raises(IssueFileError) as caught:
        load_issue(path)
    assert caught.value.exit_code == 2
    return [str(problem) for problem in caught.value.problems]


def test_every_kind_loads_into_the_model(write_issue):
    issue = load_issue(write_issue(EVERY_KIND)).issue
    assert issue.date == dt.date(2026, 11, 27)
    assert [section.kind for section in issue.sections] == [
        "headlines",
        "statement",
        "news",
        "congress",
        "world",
        "photos",
        "figure",
        "opeds",
        "testimonies",
    ]
    news = issue.sections[2]
    assert isinstance(news, StoriesSection)
    assert news.stories[0].links[0].label == "Read More Here"
    figure = issue.sections[6]
    assert isinstance(figure, FigureSection) and figure.value == "8"


@pytest.mark.parametrize("path", SAMPLE_ISSUES, ids=lambda p: p.name)
def test_sample_issues_load(path):
    issue = load_issue(path).issue
    assert issue.date.isoformat() == path.stem


def test_samples_use_every_section_kind():
    kinds = {s.kind for path in SAMPLE_ISSUES for s in load_issue(path).issue.sections}
    assert kinds == {
        "headlines",
        "statement",
        "news",
        "congress",
        "world",
        "photos",
        "figure",
        "opeds",
        "testimonies",
    }


def test_yaml_syntax_error_is_located(write_issue):
    path = write_issue("title: x\ndate: 2026-11-27\nsubject: [unclosed\npreheader: y\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:4:")
    assert "YAML syntax error" in problem


def test_unknown_kind_and_field_and_missing_field_all_reported_at_once(write_issue):
    text = EVERY_KIND.replace("  - kind: testimonies", "  - kind: poll\n  - kind: testimonies")
    text = text.replace("        source: Reuters\n", "        source: Reuters\n        colour: red\n")
    text = text.replace("    title: Statement of the president\n", "")
    path = write_issue(text)
    problems = problems_of(path)
    lines = "\n".join(problems)
    assert len(problems) == 3, lines
    assert "sections[1].title: required field is missing" in lines
    assert "sections[2].stories[0].colour: unknown field" in lines
    assert "unknown section kind 'poll'" in lines
    colour_line = text.splitlines().index("        colour: red") + 1
    assert f"{path}:{colour_line}:9: sections[2].stories[0].colour" in lines


def test_wrong_type_is_reported_with_field_path(write_issue):
    path = write_issue(EVERY_KIND.replace("source: Reuters", "source: [Reuters]"))
    (problem,) = problems_of(path)
    assert "sections[2].stories[0].source: Input should be a valid string" in problem


@pytest.mark.parametrize(
    "url", ["/relative/path", "ftp://files.example.org/x", "javascript:alert(1)", "example.org/x"]
)
def test_relative_or_non_http_urls_are_errors(write_issue, url):
    path = write_issue(EVERY_KIND.replace("https://news.example.com/shelling", url))
    (problem,) = problems_of(path)
    assert "sections[2].stories[0].links[0].url: must be an absolute http(s) URL" in problem


def test_markdown_links_must_be_absolute_too(write_issue):
    path = write_issue(EVERY_KIND.replace("[source](https://www.example.org/source)", "[source](/local)"))
    (problem,) = problems_of(path)
    assert "sections[1].body: link must be an absolute http(s) URL, got '/local'" in problem


def test_duplicate_keys_are_errors(write_issue):
    path = write_issue(EVERY_KIND.replace("kicker: Breaking\n", "kicker: Breaking\nkicker: Again\n"))
    (problem,) = problems_of(path)
    assert f"{path}:6:1: kicker: duplicate key" == problem


def test_missing_and_undecodable_files(tmp_path):
    assert "no such file" in problems_of(tmp_path / "nope.yaml")[0]
    latin1 = tmp_path / "latin.yaml"
    latin1.write_bytes("title: caf\xe9\n".encode("latin-1"))
    assert "not UTF-8" in problems_of(latin1)[0]


def test_empty_and_non_mapping_documents(write_issue):
    assert "empty" in problems_of(write_issue(""))[0]
    assert "mapping" in problems_of(write_issue("- a\n- b\n"))[0]


def test_urls_cannot_carry_slot_markers(write_issue):
    """A bare %% is not valid percent-encoding, and would let a link collect recipients' slots."""
    bad = "https://tracker.example.net/?u=%%unsubscribe_url%%&e=%%email%%"
    path = write_issue(EVERY_KIND.replace("https://news.example.com/lead-1", bad))
    (problem,) = problems_of(path)
    assert "sections[0].items[0].url: must use '%' only to start a percent-escape" in problem
    good = "https://news.example.com/a%20b?q=%C3%A9"
    assert load_issue(write_issue(EVERY_KIND.replace("https://news.example.com/lead-1", good)))


def _depth(node: yaml.Node) -> int:
    if isinstance(node, yaml.MappingNode):
        return 1 + max((_depth(value) for _, value in node.value), default=0)
    if isinstance(node, yaml.SequenceNode):
        return 1 + max((_depth(item) for item in node.value), default=0)
    return 0


@pytest.mark.parametrize("path", SAMPLE_ISSUES, ids=lambda p: p.name)
def test_sample_issues_are_far_within_the_limits(path):
    """The size cap and the nesting limit are set far above what real issues need."""
    assert path.stat().st_size * 20 < MAX_ISSUE_BYTES
    assert _depth(yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)) <= MAX_DEPTH // 2


def test_load_issue_text_reports_like_load_issue():
    with pytest.raises(IssueFileError) as caught:
        load_issue_text('title: "\\x07"\n', "inline.yaml")
    problems = [str(problem) for problem in caught.value.problems]
    assert any(problem.startswith("inline.yaml:1:8: title: control character U+0007") for problem in problems)


def test_windows_line_endings_load_like_unix_ones(tmp_path):
    """Files are read as bytes now (to cap the read); YAML itself folds CRLF and CR into newlines."""
    path = tmp_path / "2026-11-27.yaml"
    path.write_bytes(EVERY_KIND.replace("\n", "\r\n").encode("utf-8"))
    loaded = load_issue(path)
    assert loaded.issue.sections[1].body.endswith("\n\nSecond paragraph.")  # type: ignore[union-attr]
    assert (
        loaded.source.locate(("sections", 1, "body")).line == EVERY_KIND.split("\n").index("    body: |") + 1
    )
