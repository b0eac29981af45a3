"""Issue #14, the editor's desk: what real issues need from the format, loaded, checked and rendered.

Story decks and bodies written as ordered parts, op-eds among the stories with a "By" byline and
their own link label, testimonies inside a story, quote marks pasted with the quote, image sizes,
heading levels, link names, the preheader's padding and the text part's wrapping.
"""

from __future__ import annotations

import html.parser
import itertools
import re
import zlib
from pathlib import Path

import pytest

from newsletter.content.loader import IssueFileError, load_issue, load_issue_text
from newsletter.content.model import MAX_IMAGE_SIDE, strip_quote_marks
from newsletter.render.checks import check_issue
from newsletter.render.email import IMAGE_WIDTH, PREHEADER_SPAN, render_issue
from newsletter.render.text import WIDTH

PACKAGE_SAMPLE = Path(__file__).resolve().parents[1] / "newsletter/samples/issues/2026-11-27.yaml"

HEAD = """\
title: Arvel Valley Weekly
date: 2026-11-27
subject: The week in the valley
preheader: Shelling, a forced agreement and what comes next.
sections:
"""

ORDERED = (
    HEAD
    + """\
  - kind: news
    title: News
    stories:
      - headline: Lead story headline
        url: https://news.example.com/lead
        deck: The one-line deck under the lead
        body:
          - bullets:
              - First bullet point
          - paragraph: Opening paragraph after the bullets.
          - quote:
              text: "\u201cA quote pasted with its marks.\u201d"
          - paragraph: Closing paragraph after the quote.
          - testimonies:
              - quote: I saw the convoy turn back.
                speaker: Ana Pell
                description: driver from Lint
          - image:
              src: https://images.example.org/convoy.jpg
              alt: A convoy on a mountain road
              width: 1200
              height: 800
        links:
          - url: https://news.example.com/lead-more
      - oped:
          title: An op-ed among the news
          author: Lena Ortiz
          outlet: Time
          excerpt: Why the valley matters.
          url: https://opinion.example.com/among-news
          label: Read the column
      - headline: Second story headline
        summary: A short-form summary.
        links:
          - url: https://news.example.com/second
  - kind: opeds
    items:
      - title: Op-ed without a link
        author: By Marc Dain
      - title: Op-ed with the default label
        author: Ines Halvorsen
        url: https://opinion.example.com/default
"""
)


def load(text: str, path: str = "issue.yaml"):
    return load_issue_text(text, path).issue


def problems_of(text: str) -> list[str]:
    with pytest.raises(IssueFileError) as caught:
        load_issue_text(text, "issue.yaml")
    return [str(problem) for problem in caught.value.problems]


@pytest.fixture
def rendered(settings):
    return render_issue(load(ORDERED), settings)


# --- the model and its located errors ---------------------------------------------------------------


def test_body_parts_load_in_written_order():
    story = load(ORDERED).sections[0].stories[0]  # type: ignore[union-attr]
    kinds = [type(part).__name__ for part in story.parts()]
    assert kinds == [
        "BulletsPart", "ParagraphPart", "QuotePart", "ParagraphPart", "TestimoniesPart", "ImagePart",
    ]
    assert story.deck == "The one-line deck under the lead"


def test_short_form_still_loads_as_parts_in_todays_order(write_issue):
    issue = load_issue(Path("tests/fixtures/issues/2026-11-20.yaml")).issue
    story = issue.sections[2].stories[0]  # type: ignore[union-attr]
    assert [type(part).__name__ for part in story.parts()] == ["ParagraphPart", "QuotePart", "BulletsPart"]


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ("          - paragraph: Opening", "          - section: Opening",
         "issue.yaml:15:13: sections[0].stories[0].body[1]: a body part is a mapping with one of: "
         "paragraph, bullets, quote, image, testimonies"),
        ("          - paragraph: Closing", "          - 42\n          - paragraph: Closing",
         "issue.yaml:18:13: sections[0].stories[0].body[3]: a body part is a mapping with one of"),
        ("              text: \"\u201cA quote", "              txt: \"\u201cA quote",
         "issue.yaml:17:15: sections[0].stories[0].body[2].quote.txt: unknown field"),
        ("              height: 800\n", "",
         "issue.yaml:23:13: sections[0].stories[0].body[5].image: give both width and height"),
        ("              width: 1200", f"              width: {MAX_IMAGE_SIDE + 1}",
         "issue.yaml:26:15: sections[0].stories[0].body[5].image.width: Input should be less than or equal"),
        ("              width: 1200", "              width: wide",
         "issue.yaml:26:15: sections[0].stories[0].body[5].image.width: Input should be a valid integer"),
        ("        deck: The one-line deck under the lead", "        deck: [The one-line, deck]",
         "issue.yaml:11:9: sections[0].stories[0].deck: Input should be a valid string"),
        ("          url: https://opinion.example.com/among-news", "          url: ftp://x.example",
         "issue.yaml:35:11: sections[0].stories[1].oped.url: must be an absolute http(s) URL"),
        ("          label: Read the column", "          label: Read the column\n          links: []",
         "issue.yaml:37:11: sections[0].stories[1].oped.links: unknown field"),
        ("        summary: A short-form summary.",
         "        summary: A short-form summary.\n        body: [{paragraph: Both}]",
         "issue.yaml:37:9: sections[0].stories[2]: write the story's body either as `body`"),
        ("                speaker: Ana Pell\n", "",
         "issue.yaml:20:17: sections[0].stories[0].body[4].testimonies[0].speaker: required field"),
    ],
    ids=["unknown-part", "part-not-a-mapping", "unknown-quote-field", "width-without-height",
         "huge-width", "width-not-a-number", "deck-not-text", "oped-bad-url", "oped-unknown-field",
         "body-and-short-form", "testimony-without-speaker"],
)
def test_new_fields_report_errors_at_file_line_column(replace, by, expected):
    assert replace in ORDERED
    found = problems_of(ORDERED.replace(replace, by))
    assert any(problem.startswith(expected) for problem in found), found


@pytest.mark.parametrize(
    ("written", "loaded"),
    [
        ("\u201cWe stay.\u201d", "We stay."),
        ('"We stay."', "We stay."),
        ("\u00abNous restons.\u00bb", "Nous restons."),
        ("\u201eWir bleiben.\u201c", "Wir bleiben."),
        ('"\u201cMixed marks.\u201d"', "\u201cMixed marks.\u201d"),  # one pair only
        ("\u201c \u201cNested.\u201d \u201d", "\u201c \u201cNested.\u201d \u201d"),  # ambiguous: as written
        ('"Stay," she said, "and wait."', '"Stay," she said, "and wait."'),  # two quotations
        ("\u201cUnbalanced.", "\u201cUnbalanced."),
        ("\u201c\u201d", ""),
        ('""', ""),
        ('"', '"'),
        ("", ""),
    ],
)
def test_one_pair_of_outer_quote_marks_is_stripped(written, loaded):
    assert strip_quote_marks(written) == loaded


def test_quotes_that_are_only_marks_load_empty_and_check_reports_them(write_issue, settings):
    text = ORDERED.replace("\u201cA quote pasted with its marks.\u201d", "\u201c\u201d")
    loaded = load_issue(write_issue(text))
    problems = [str(problem) for problem in check_issue(loaded, settings)]
    assert any(":17:" in problem and "body[2].quote.text: quote is empty" in problem for problem in problems)


def test_testimony_quotes_lose_their_pasted_marks_too():
    text = ORDERED.replace("I saw the convoy turn back.", "'\u201cI saw the convoy turn back.\u201d'")
    story = load(text).sections[0].stories[0]  # type: ignore[union-attr]
    assert story.body[4].testimonies[0].quote == "I saw the convoy turn back."


# --- rendering in written order -----------------------------------------------------------------------


def positions(body: str, needles: list[str]) -> list[int]:
    found = [body.find(needle) for needle in needles]
    assert -1 not in found, dict(zip(needles, found, strict=True))
    return found


ORDER = [
    "Lead story headline",
    "The one-line deck",
    "First bullet point",
    "Opening paragraph",
    "A quote pasted with its marks.",
    "Closing paragraph",
    "I saw the convoy turn back.",
    "convoy.jpg",
    "An op-ed among the news",
    "Second story headline",
]


def test_html_renders_parts_in_written_order(rendered):
    found = positions(rendered.html, ORDER)
    assert found == sorted(found)
    assert "&ldquo;A quote pasted with its marks.&rdquo;" in rendered.html
    assert "\u201c" not in rendered.html.split("A quote pasted")[0][-20:]  # not marked twice


def test_text_renders_parts_in_written_order(rendered):
    found = positions(rendered.text, ORDER)
    assert found == sorted(found)
    assert '  > "A quote pasted with its marks."\n' in rendered.text
    assert "  -- Ana Pell, driver from Lint" in rendered.text


def test_oped_bylines_and_labels(rendered):
    html, text = rendered.html, rendered.text
    assert "By Lena Ortiz, <em>Time</em>" in html
    assert "By Marc Dain" in html and "By By" not in html
    assert ">Read the column</a>" in html and ">Read the op-ed</a>" in html
    assert html.count("Read the op-ed</a>") == 1  # the op-ed without a URL has no button
    assert "  By Lena Ortiz, Time\n" in text and "  By Marc Dain\n" in text
    assert "  Read the column: https://opinion.example.com/among-news" in text
    assert ">Op-ed:</span>" in html  # an op-ed among the stories says what it is
    assert "* Op-ed: An op-ed among the news\n" in text


def test_image_carries_width_and_height(rendered, settings):
    assert f'width="{IMAGE_WIDTH}" height="368"' in rendered.html  # 552 * 800 / 1200
    unsized = ORDERED.replace("              width: 1200\n              height: 800\n", "")
    without = render_issue(load(unsized), settings)
    img = re.search(r'<img src="https://images.example.org/convoy.jpg"[^>]*>', without.html)
    assert img is not None and "height=" not in img.group(0).replace("height:auto", "")


# --- headings, headline links, the lead story ---------------------------------------------------------


class Outline(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.levels: list[int] = []

    def handle_starttag(self, tag, attrs):
        if re.fullmatch(r"h[1-6]", tag):
            self.levels.append(int(tag[1]))


def outline(body: str) -> list[int]:
    parser = Outline()
    parser.feed(body)
    return parser.levels


def assert_no_skipped_level(levels: list[int]) -> None:
    assert levels[0] == 1
    for before, after in itertools.pairwise(levels):
        assert after <= before + 1, levels


@pytest.mark.parametrize("path", [PACKAGE_SAMPLE, *sorted(Path("tests/fixtures/issues").glob("*.yaml"))],
                         ids=lambda p: p.name)
def test_sample_headings_never_skip_a_level(path, settings):
    assert_no_skipped_level(outline(render_issue(load_issue(path).issue, settings).html))


def test_untitled_sections_put_their_headlines_at_h2(settings):
    text = ORDERED.replace("    title: News\n", "")
    headlines = "  - kind: headlines\n    items:\n      - text: Untitled lead\n"
    text = text.replace("  - kind: news\n", headlines + "  - kind: news\n")
    html = render_issue(load(text), settings).html
    levels = outline(html)
    assert_no_skipped_level(levels)
    assert levels[:3] == [1, 2, 2]


def test_linked_headlines_differ_from_unlinked_in_light_and_dark_mode(rendered):
    linked = re.search(
        r'<a class="nl-hl" href="https://news\.example\.com/lead" style="([^"]*)"', rendered.html
    )
    unlinked = re.search(r'<h3 style="[^"]*">Second story headline</h3>', rendered.html)
    assert linked is not None and "text-decoration:underline" in linked.group(1) and unlinked is not None
    assert "a.nl-hl { color: #e6e8eb !important; text-decoration-color: #ff9b8f" in rendered.html


def test_the_lead_story_is_larger_than_the_rest(rendered):
    lead = re.search(r'<h3 style="[^"]*font-size:(\d+)px[^"]*">(?:(?!</h3>).)*Lead story', rendered.html)
    second = re.search(r'<h3 style="[^"]*font-size:(\d+)px[^"]*">Second story headline', rendered.html)
    assert lead and second and int(lead.group(1)) > int(second.group(1))


# --- link names, preheader, masthead ------------------------------------------------------------------


def test_repeated_link_labels_get_accessible_names_with_their_headline(rendered):
    html = rendered.html
    name = "Read More Here: Lead story headline"
    assert f'aria-label="{name}" title="{name}"' in html
    assert 'aria-label="Read More Here: Second story headline"' in html
    assert 'aria-label="Read the column: An op-ed among the news"' in html
    assert html.count(">Read More Here</a>") == 2  # the visible label is unchanged


def test_every_read_more_link_in_the_largest_sample_has_a_distinct_name(settings):
    html = render_issue(load_issue(PACKAGE_SAMPLE).issue, settings).html
    names = re.findall(r'aria-label="(Read More Here: [^"]*)"', html)
    assert len(names) > 20 and len(set(names)) == len(names)


def test_headline_text_is_escaped_in_link_names(settings):
    text = ORDERED.replace("Second story headline", 'Second "story" <b>headline</b>')
    html = render_issue(load(text), settings).html
    assert 'aria-label="Read More Here: Second &#34;story&#34; &lt;b&gt;headline&lt;/b&gt;"' in html


def test_preheader_is_padded_so_inboxes_show_no_body_text(rendered):
    hidden = re.search(r'<div style="display:none;[^"]*">(.*?)</div>', rendered.html)
    assert hidden is not None
    preheader = "Shelling, a forced agreement and what comes next."
    assert hidden.group(1).startswith(preheader)
    filler = hidden.group(1)[len(preheader):]
    assert set(re.findall(r"&[#\w]+;", filler)) == {"&#847;", "&zwnj;", "&nbsp;"}
    assert len(re.findall(r"&[#\w]+;", filler)) + len(preheader) >= PREHEADER_SPAN


def test_masthead_date_is_not_repeated_when_the_title_has_it(settings):
    dated = load(ORDERED.replace("title: Arvel Valley Weekly", 'title: "Arvel Valley: November 27, 2026"'))
    result = render_issue(dated, settings)
    assert result.html.count("November 27, 2026") == 1  # in the title, not again on the date line
    assert result.text.count("November 27, 2026") == 1
    undated = render_issue(load(ORDERED), settings)
    assert "November 27, 2026" in undated.html and "November 27, 2026" in undated.text


# --- the text part ------------------------------------------------------------------------------------


def test_soft_line_breaks_are_joined_before_wrapping(settings):
    paragraph = (
        "For three weeks the blockade held and the valley waited for the road to open again. On\n"
        "Monday it attacked, and by nightfall three villages had fallen to the columns from the\n"
        "south."
    )
    text = ORDERED.replace("paragraph: Opening paragraph after the bullets.",
                           "paragraph: |\n              " + paragraph.replace("\n", "\n              "))
    part = render_issue(load(text), settings).text
    block = part[part.index("  For three weeks"):part.index("south.") + 6]
    lines = block.split("\n")
    assert all(len(line) <= WIDTH for line in lines)
    # Filled lines: each line but the last is too full to take the next word.
    for line, following in itertools.pairwise(lines):
        assert len(line) + 1 + len(following.split()[0]) > WIDTH, lines
    assert "\n  Monday" not in block


def test_hard_breaks_are_kept(settings):
    text = ORDERED.replace("paragraph: Opening paragraph after the bullets.",
                           'paragraph: "Line one\\\\\\nLine two"')
    part = render_issue(load(text), settings).text
    assert "  Line one\n  Line two" in part


# --- check ---------------------------------------------------------------------------------------------


def test_adjacent_sections_with_one_title_are_a_warning(write_issue, settings):
    text = ORDERED + "  - kind: opeds\n    title: Op-eds\n    items:\n      - title: Another op-ed\n"
    problems = check_issue(load_issue(write_issue(text)), settings)
    (warning,) = [problem for problem in problems if "same title" in problem.message]
    assert warning.severity == "warning" and warning.field == "sections[2].title" and warning.line == 49


def test_links_inside_body_parts_and_opeds_among_stories_count_as_duplicates(write_issue, settings):
    text = ORDERED.replace("url: https://opinion.example.com/among-news", "url: https://news.example.com/lead")
    problems = check_issue(load_issue(write_issue(text)), settings)
    assert any("duplicate link https://news.example.com/lead" in problem.message for problem in problems)


def test_the_package_sample_uses_the_new_features_and_is_clean(settings):
    loaded = load_issue(PACKAGE_SAMPLE)
    assert check_issue(loaded, settings) == []
    text = PACKAGE_SAMPLE.read_text(encoding="utf-8")
    for feature in ("deck:", "body:", "- oped:", "- testimonies:", "label: Read the", "height:"):
        assert feature in text, feature


# --- hostile input ------------------------------------------------------------------------------------


def test_parts_nested_past_the_depth_limit_are_refused():
    nested = "[" * 30 + "]" * 30
    found = problems_of(ORDERED.replace("          - paragraph: Opening paragraph after the bullets.",
                                        f"          - bullets: {nested}"))
    assert any("nested more than 20 levels deep" in problem for problem in found), found


def test_a_part_cannot_hold_a_body():
    found = problems_of(ORDERED.replace("          - paragraph: Opening paragraph after the bullets.",
                                        "          - paragraph: {body: [{paragraph: x}]}"))
    assert any("body[1].paragraph: Input should be a valid string" in problem for problem in found), found


def test_a_huge_parts_list_loads_and_renders(settings):
    parts = "".join(f"          - paragraph: Paragraph number {n}.\n" for n in range(3000))
    text = ORDERED.replace("          - paragraph: Opening paragraph after the bullets.\n", parts)
    result = render_issue(load(text), settings)
    assert result.html.index("Paragraph number 0.") < result.html.index("Paragraph number 2999.")
    assert "Paragraph number 2999." in result.text


def test_an_empty_body_list_and_empty_parts(settings):
    issue = load(ORDERED.replace("        summary: A short-form summary.\n", "        body: []\n"))
    assert issue.sections[0].stories[2].parts() == []  # type: ignore[union-attr]
    found = problems_of(ORDERED.replace("          - paragraph: Opening paragraph after the bullets.",
                                        "          - {}"))
    assert any("body[1]: a body part is a mapping" in problem for problem in found), found


# --- image sizes read from a local file ---------------------------------------------------------------

PHOTO = """\
  - kind: photos
    photos:
      - src: https://images.example.org/a.jpg
        alt: A photo
        file: {file}
"""


def photo_issue(tmp_path: Path, file: str, extra: str = "") -> Path:
    path = tmp_path / "issues" / "2026-11-27.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(HEAD + PHOTO.format(file=file) + extra, encoding="utf-8")
    return path


def save_image(path: Path, size: tuple[int, int], kind: str) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, "white").save(path, kind)


@pytest.mark.parametrize("kind", ["PNG", "JPEG", "GIF", "WEBP"])
def test_image_size_is_read_from_a_local_file(tmp_path, settings, kind):
    save_image(tmp_path / "issues" / "photos" / "a.img", (1200, 900), kind)
    issue = load_issue(photo_issue(tmp_path, "photos/a.img")).issue
    photo = issue.sections[0].photos[0]  # type: ignore[union-attr]
    assert (photo.width, photo.height) == (1200, 900)
    assert 'width="552" height="414"' in render_issue(issue, settings).html


def test_written_sizes_win_over_the_file(tmp_path):
    save_image(tmp_path / "issues" / "a.png", (1200, 900), "PNG")
    path = photo_issue(tmp_path, "a.png", "        width: 100\n        height: 50\n")
    photo = load_issue(path).issue.sections[0].photos[0]  # type: ignore[union-attr]
    assert (photo.width, photo.height) == (100, 50)


@pytest.mark.parametrize(
    ("file", "setup", "message"),
    [
        ("missing.png", None, "no such file 'missing.png'"),
        ("../secret.png", "outside", "is outside the issue file's folder"),
        ("/etc/hostname", None, "is outside the issue file's folder"),
        ("notes.png", "text", "is not an image file"),
        ("photos", "directory", "is not a file"),
        ("huge.png", "huge", "claims an implausible size"),
    ],
)
def test_unusable_image_files_are_located_errors(tmp_path, file, setup, message):
    issues = tmp_path / "issues"
    issues.mkdir()
    if setup == "outside":
        save_image(tmp_path / "secret.png", (10, 10), "PNG")
    elif setup == "text":
        (issues / "notes.png").write_bytes(b"not an image\x00" * 10)
    elif setup == "directory":
        (issues / "photos").mkdir()
    elif setup == "huge":
        save_image(issues / "huge.png", (1, 1), "PNG")
        data = bytearray((issues / "huge.png").read_bytes())
        data[16:24] = (200_000).to_bytes(4, "big") * 2  # IHDR claims 200,000 x 200,000 pixels
        data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
        (issues / "huge.png").write_bytes(bytes(data))
    path = photo_issue(tmp_path, file)
    with pytest.raises(IssueFileError) as caught:
        load_issue(path)
    (problem,) = caught.value.problems
    assert (problem.line, problem.column, problem.field) == (10, 9, "sections[0].photos[0].file")
    assert message in problem.message


def test_a_file_larger_than_the_pixel_limit_is_reported_on_the_width(tmp_path):
    save_image(tmp_path / "issues" / "wide.png", (MAX_IMAGE_SIDE + 1, 1), "PNG")
    with pytest.raises(IssueFileError) as caught:
        load_issue(photo_issue(tmp_path, "wide.png"))
    assert "less than or equal to 10000" in str(caught.value)
