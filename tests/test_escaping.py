"""No field value ever produces markup it did not ask for (property-based)."""

from __future__ import annotations

import datetime as dt
import html.parser

from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from newsletter.config import Settings
from newsletter.content import model as m
from newsletter.render.email import render_issue, render_mjml
from newsletter.render.markdown import to_html, to_inline_html

NEWSLETTER = Settings().newsletter
# Text without Markdown syntax characters, so the only markup can come from escaping failures.
PIECES = [*"<>&\"'/=abc %;{}!-", "<script>", "</mj-text>", "%%email%%", "<mj-section>", "{{",
          "}}", "&amp;", "<![CDATA[", "-->", "<!--", "<b>", "<img src=x>"]
hostile = st.lists(st.sampled_from(PIECES), min_size=1, max_size=20).map(
    lambda parts: "x" + "".join(parts) + "y"
)


class TagCollector(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def tags_of(fragment: str) -> list[str]:
    collector = TagCollector()
    collector.feed(fragment)
    return collector.tags


@given(hostile)
def test_markdown_never_emits_tags_for_plain_text(value):
    assert tags_of(to_inline_html(value)) == []
    assert set(tags_of(to_html(value))) <= {"p"}


def _issue(value: str) -> m.Issue:
    return m.Issue(
        title=value,
        date=dt.date(2026, 11, 27),
        subject=value,
        preheader=value,
        kicker=value,
        sections=[
            m.HeadlinesSection(kind="headlines", title=value, items=[m.Headline(text=value)]),
            m.StoriesSection(
                kind="news",
                title=value,
                intro=value,
                stories=[
                    m.Story(
                        headline=value,
                        source=value,
                        summary=value,
                        quote=m.Quote(text=value, attribution=value),
                        bullets=[value],
                        image=m.Image(
                            src="https://images.example.org/a.jpg",
                            alt=value,
                            caption=value,
                            credit=value,
                        ),
                        links=[m.Link(url="https://example.org/a", label=value)],
                    ),
                    m.Story(
                        headline=value,
                        url="https://example.org/b",
                        deck=value,
                        body=[
                            m.BulletsPart(bullets=[value]),
                            m.ParagraphPart(paragraph=value),
                            m.QuotePart(quote=m.Quote(text=value)),
                            m.ImagePart(image=m.Image(src="https://images.example.org/c.jpg", alt=value,
                                                      width=1200, height=800)),
                            m.TestimoniesPart(testimonies=[m.Testimony(quote=value, speaker=value)]),
                        ],
                        links=[m.Link(url="https://example.org/c")],
                    ),
                    m.OpedItem(
                        oped=m.Oped(title=value, author=value, url="https://o.example/b", label=value)
                    ),
                ],
            ),
            m.StatementSection(
                kind="statement",
                title=value,
                author=value,
                role=value,
                body=value,
                actions=m.ActionList(intro=value, items=[value]),
            ),
            m.PhotosSection(
                kind="photos",
                title=value,
                photos=[
                    m.Image(src="https://images.example.org/b.jpg", alt=value, caption=value, credit=value)
                ],
            ),
            m.FigureSection(kind="figure", title=value, value=value, text=value, source=value),
            m.OpedsSection(
                kind="opeds",
                title=value,
                items=[
                    m.Oped(title=value, author=value, outlet=value, excerpt=value, url="https://o.example/"),
                    m.Oped(title=value, author=value, label=value),
                ],
            ),
            m.TestimoniesSection(
                kind="testimonies",
                title=value,
                items=[m.Testimony(quote=value, speaker=value, description=value)],
            ),
        ],
    )


BASELINE_TAGS = sorted(tags_of(render_issue(_issue("plain"), NEWSLETTER).html))


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile)
def test_any_field_value_renders_no_extra_markup(value):
    rendered = render_issue(_issue(value), NEWSLETTER)
    assert sorted(tags_of(rendered.html)) == BASELINE_TAGS
    assert rendered.slots == {"unsubscribe_url", "email"}
    for body in (rendered.html, rendered.text, render_mjml(_issue(value), NEWSLETTER)):
        # only the footer's own markers, once each, and no other pair of percent signs
        assert body.count("%%email%%") == 1
        assert body.count("%%unsubscribe_url%%") <= 2
        rest = body.replace("%%email%%", "").replace("%%unsubscribe_url%%", "")
        assert "%%" not in rest


plain_words = st.text(
    alphabet=st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters="*_[]<>&\\`"),
    min_size=1,
    max_size=60,
)


def test_text_of_only_whitespace_renders_as_nothing() -> None:
    """Python's idea of whitespace, which includes U+00A0: no empty paragraph in the email."""
    from newsletter.render import markdown

    for value in ("\xa0", " \u2003\n", "\t"):
        assert markdown.to_html(value) == "" and markdown.to_inline_html(value) == ""
        assert markdown.to_text(value) == ""


@given(plain_words)
def test_fast_path_for_plain_text_matches_the_parser(value):
    from newsletter.render import markdown

    # Text that is only whitespace (to Python: a no-break space too) renders as nothing on purpose;
    # markdown-it would make an empty paragraph of U+00A0.
    assume(value.strip())
    parser = markdown._parser()
    neutral = markdown.neutralise_html
    expected_inline = parser.renderer.render(parser.parseInline(value.strip()), parser.options, {})
    if markdown._is_plain(value):
        assert markdown.to_inline_html(value) == neutral(expected_inline.strip())
        tokens = parser.parse(value)
        markdown._style(tokens)
        expected_block = parser.renderer.render(tokens, parser.options, {}).strip()
        assert markdown.to_html(value) == neutral(expected_block)
