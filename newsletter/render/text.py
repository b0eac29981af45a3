"""Issue -> the plain-text part: every headline, quote and link URL, wrapped at 72 columns.

Built from the same model as the HTML (not by stripping the HTML), so nothing a reader could click
in the HTML is missing here, and the layout reads well in a terminal mail client.
"""

from __future__ import annotations

import datetime as dt
import textwrap
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from newsletter.config import NewsletterSettings
from newsletter.content.model import (
    BulletsPart,
    FigureSection,
    HeadlinesSection,
    Image,
    ImagePart,
    Issue,
    Oped,
    OpedItem,
    OpedsSection,
    ParagraphPart,
    Part,
    PhotosSection,
    Quote,
    QuotePart,
    Section,
    StatementSection,
    StoriesSection,
    TestimoniesSection,
    Testimony,
)
from newsletter.render import markdown
from newsletter.render.slots import marker, neutralise_text

WIDTH = 72
RULE = "=" * WIDTH
THIN_RULE = "-" * WIDTH


def _wrap(text: str, indent: str = "", first: str | None = None) -> str:
    """Wrap each paragraph and list item; URLs are never broken, even when longer than a line."""
    out: list[str] = []
    for paragraph in text.split("\n"):
        if not paragraph.strip():
            out.append("")
            continue
        lead = indent if first is None or out else first
        item_indent = indent
        stripped = paragraph.lstrip()
        if stripped.startswith("- ") or (stripped[:4].rstrip(".").isdigit() and ". " in stripped[:5]):
            item_indent = indent + " " * (len(paragraph) - len(stripped) + stripped.index(" ") + 1)
        if len(paragraph) + len(lead) <= WIDTH and "  " not in paragraph:
            out.append(lead + paragraph.rstrip())
        else:
            out.append(_wrapper(lead, item_indent).fill(paragraph))
    return "\n".join(out)


@lru_cache(maxsize=64)
def _wrapper(initial_indent: str, subsequent_indent: str) -> textwrap.TextWrapper:
    """One wrapper per indentation, reused: building a TextWrapper per paragraph was half the cost."""
    return textwrap.TextWrapper(
        width=WIDTH,
        initial_indent=initial_indent,
        subsequent_indent=subsequent_indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def long_date(day: dt.date) -> str:
    """"November 27, 2026": how the masthead of both parts dates an issue."""
    return f"{day:%B} {day.day}, {day.year}"


def masthead_date(issue: Issue) -> str:
    """The date line under the title, or nothing when the title already says the date."""
    date = long_date(issue.date)
    return "" if date in issue.title else date


def _plain(text: str) -> str:
    return neutralise_text(text)


def _heading(title: str) -> str:
    return f"{_wrap(_plain(title).upper())}\n{THIN_RULE}"


def _image(image: Image, indent: str = "") -> list[str]:
    lines = [_wrap(f"[Image: {_plain(image.alt)}]", indent=indent)] if image.alt else []
    if image.caption:
        lines.append(_wrap(markdown.inline_to_text(image.caption), indent=indent))
    if image.credit:
        lines.append(_wrap(_plain(image.credit), indent=indent))
    lines.append(f"{indent}Image: {image.src}")
    return lines


def _quote(quote: Quote, indent: str) -> str:
    text = f'"{markdown.inline_to_text(quote.text)}"'
    if quote.attribution:
        text += f" -- {_plain(quote.attribution)}"
    return _wrap(text, indent=f"{indent}> ")


def _testimony(item: Testimony, indent: str) -> str:
    speaker = ", ".join(_plain(part) for part in (item.speaker, item.description) if part)
    lines = [_wrap(f'"{markdown.inline_to_text(item.quote)}"', indent=indent), f"{indent}-- {speaker}"]
    if item.url:
        lines.append(f"{indent}{item.url}")
    return "\n".join(lines)


def _part(part: Part, indent: str) -> list[str]:
    if isinstance(part, ParagraphPart):
        return [_wrap(markdown.to_text(part.paragraph), indent=indent)]
    if isinstance(part, BulletsPart):
        bullet, hanging = f"{indent}- ", f"{indent}  "
        return [_wrap(markdown.inline_to_text(item), first=bullet, indent=hanging) for item in part.bullets]
    if isinstance(part, QuotePart):
        return [_quote(part.quote, indent)]
    if isinstance(part, ImagePart):
        return _image(part.image, indent=indent)
    return [_testimony(item, indent) for item in part.testimonies]


def _oped(oped: Oped, indent: str = "  ", tag: str = "") -> str:
    """One op-ed, in its section or among the stories (``tag`` "Op-ed: " there): title, "By author,
    outlet", excerpt, link."""
    lines = [_wrap(tag + _plain(oped.title), first="* ", indent=indent)]
    byline = byline_text(oped)
    if byline:
        lines.append(_wrap(byline, indent=indent))
    if oped.excerpt:
        lines.append(_wrap(markdown.to_text(oped.excerpt), indent=indent))
    if oped.url:
        lines.append(f"{indent}{_plain(oped.label)}: {oped.url}")
    return "\n".join(lines)


def by_author(author: str) -> str:
    """"Marta Olenik" -> "By Marta Olenik", as op-eds are credited; "By ..." as written is not doubled."""
    if not author or author.lower().startswith("by "):
        return author
    return f"By {author}"


def byline_text(oped: Oped) -> str:
    """"By Marta Olenik, Foreign Policy"."""
    return ", ".join(_plain(part) for part in (by_author(oped.author), oped.outlet) if part)


def _stories(section: StoriesSection) -> list[str]:
    blocks: list[str] = []
    if section.title:
        blocks.append(_heading(section.title))
    if section.intro:
        blocks.append(_wrap(markdown.to_text(section.intro)))
    for story in section.stories:
        if isinstance(story, OpedItem):
            blocks.append(_oped(story.oped, tag="Op-ed: "))
            continue
        lines: list[str] = []
        headline = _plain(story.headline)
        if story.source:
            headline = f"{_plain(story.source)}: {headline}"
        lines.append(_wrap(headline, first="* ", indent="  "))
        if story.deck:
            lines.append(_wrap(markdown.inline_to_text(story.deck), indent="  "))
        if story.url:
            lines.append(f"  {story.url}")
        for part in story.parts():
            lines.extend(_part(part, "  "))
        for link in story.links:
            lines.append(f"  {_plain(link.label)}: {link.url}")
        blocks.append("\n".join(lines))
    return blocks


def _headlines(section: HeadlinesSection) -> list[str]:
    blocks = [_heading(section.title)] if section.title else []
    for item in section.items:
        text = _wrap(_plain(item.text), first="* ", indent="  ")
        blocks.append(f"{text}\n  {item.url}" if item.url else text)
    return blocks


def _statement(section: StatementSection) -> list[str]:
    blocks = [_heading(section.title)]
    byline = ", ".join(_plain(part) for part in (section.author, section.role) if part)
    if byline:
        blocks.append(byline)
    if section.body:
        blocks.append(_wrap(markdown.to_text(section.body)))
    if section.actions:
        if section.actions.intro:
            blocks.append(_wrap(markdown.inline_to_text(section.actions.intro)))
        items = [
            _wrap(markdown.inline_to_text(item), first=f"{n:>2}. ", indent="    ")
            for n, item in enumerate(section.actions.items, start=1)
        ]
        blocks.append("\n".join(items))
    return blocks


def _photos(section: PhotosSection) -> list[str]:
    return [_heading(section.title), *("\n".join(_image(photo)) for photo in section.photos)]


def _figure(section: FigureSection) -> list[str]:
    lines = [_heading(section.title)] if section.title else []
    lines.append(_wrap(f"{_plain(section.value)} {markdown.inline_to_text(section.text)}"))
    if section.source:
        lines.append(f"Source: {_plain(section.source)}" + (f" {section.url}" if section.url else ""))
    return ["\n".join(lines)]


def _opeds(section: OpedsSection) -> list[str]:
    return [_heading(section.title), *(_oped(oped) for oped in section.items)]


def _testimonies(section: TestimoniesSection) -> list[str]:
    return [_heading(section.title), *(_testimony(item, "  ") for item in section.items)]


_RENDERERS: dict[type, Callable[[Any], list[str]]] = {
    HeadlinesSection: _headlines,
    StatementSection: _statement,
    StoriesSection: _stories,
    PhotosSection: _photos,
    FigureSection: _figure,
    OpedsSection: _opeds,
    TestimoniesSection: _testimonies,
}


def _section(section: Section) -> list[str]:
    return _RENDERERS[type(section)](section)


def render_text(issue: Issue, settings: NewsletterSettings) -> str:
    archive_url = settings.archive_url(issue.date)
    title = f"{_plain(issue.kicker)}: {_plain(issue.title)}" if issue.kicker else _plain(issue.title)
    blocks = [
        f"View in browser: {archive_url}",
        RULE,
        _wrap(settings.name.upper()),
        _wrap(title),
        masthead_date(issue),
        RULE,
    ]
    for section in issue.sections:
        blocks.extend(_section(section))
    blocks += [
        RULE,
        _wrap(settings.why_subscribed),
        f"This email was sent to {marker('email')}.",
        f"Unsubscribe: {marker('unsubscribe_url')}",
        _wrap(f"{settings.name}, {settings.postal_address}"),
    ]
    return "\n\n".join(block for block in blocks if block) + "\n"
