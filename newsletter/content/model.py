"""The typed model of one issue: an ordered list of section blocks.

Pydantic models with ``extra="forbid"`` so a misspelt field is an error, not silently dropped.
Text fields hold Markdown source; rendering decides how it becomes HTML or plain text. Emptiness is
allowed by the schema (a fresh draft has empty skeletons) and reported by ``newsletter check``.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from newsletter.urls import HttpUrl

DEFAULT_LINK_LABEL = "Read More Here"

# Links leave the email for the open web: the rule (absolute http(s), no invisible characters, spaces
# encoded, '%' only as an escape) is shared with the configured URLs in ``newsletter.urls``.
Url = HttpUrl


def _number_as_text(value: object) -> object:
    """Editors write ``value: 8``; the figure is shown as text, so a bare number is accepted."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


class Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, strict=True)


class Link(Block):
    url: Url
    label: str = DEFAULT_LINK_LABEL


class Image(Block):
    src: Url
    alt: str
    caption: str = ""
    credit: str = ""
    link: Url | None = None


class Quote(Block):
    text: str
    attribution: str = ""


class Story(Block):
    headline: str
    url: Url | None = None
    source: str = ""
    summary: str = ""
    quote: Quote | None = None
    bullets: list[str] = Field(default_factory=list)
    image: Image | None = None
    links: list[Link] = Field(default_factory=list)


class Headline(Block):
    text: str
    url: Url | None = None


class ActionList(Block):
    intro: str = ""
    items: list[str] = Field(default_factory=list)


class HeadlinesSection(Block):
    """Short lead headlines at the top of the issue."""

    kind: Literal["headlines"]
    title: str = ""
    items: list[Headline] = Field(default_factory=list)


class StatementSection(Block):
    """The organisation's statement of the week, often closing with a numbered list of demands."""

    kind: Literal["statement"]
    title: str
    author: str = ""
    role: str = ""
    body: str = ""
    actions: ActionList | None = None


class StoriesSection(Block):
    """News, U.S. Congress and world leaders / NGOs share one shape: a titled list of stories."""

    kind: Literal["news", "congress", "world"]
    title: str = ""
    intro: str = ""
    stories: list[Story] = Field(default_factory=list)


class PhotosSection(Block):
    kind: Literal["photos"]
    title: str = "Photos of the week"
    photos: list[Image] = Field(default_factory=list)


class FigureSection(Block):
    """The weekly number, e.g. value "8" with text "times Azerbaijan violated the ceasefire"."""

    kind: Literal["figure"]
    title: str = ""
    value: Annotated[str, BeforeValidator(_number_as_text)]
    text: str
    source: str = ""
    url: Url | None = None


class Oped(Block):
    title: str
    author: str = ""
    outlet: str = ""
    excerpt: str = ""
    url: Url


class OpedsSection(Block):
    kind: Literal["opeds"]
    title: str = "Op-eds"
    items: list[Oped] = Field(default_factory=list)


class Testimony(Block):
    quote: str
    speaker: str
    description: str = ""
    url: Url | None = None


class TestimoniesSection(Block):
    kind: Literal["testimonies"]
    title: str = "Testimonies"
    items: list[Testimony] = Field(default_factory=list)


Section = Annotated[
    HeadlinesSection
    | StatementSection
    | StoriesSection
    | PhotosSection
    | FigureSection
    | OpedsSection
    | TestimoniesSection,
    Field(discriminator="kind"),
]

SECTION_KINDS: tuple[str, ...] = (
    "headlines",
    "statement",
    "news",
    "congress",
    "world",
    "photos",
    "figure",
    "opeds",
    "testimonies",
)


class Issue(Block):
    """One weekly issue, as the editors wrote it."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, strict=False)

    title: str
    date: dt.date
    subject: str
    preheader: str = ""
    kicker: str = ""
    sections: list[Section] = Field(default_factory=list)
