"""The typed model of one issue: an ordered list of section blocks.

Pydantic models with ``extra="forbid"`` so a misspelt field is an error, not silently dropped.
Text fields hold Markdown source; rendering decides how it becomes HTML or plain text. Emptiness is
allowed by the schema (a fresh draft has empty skeletons) and reported by ``newsletter check``.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_validator,
)

from newsletter.urls import HttpUrl

DEFAULT_LINK_LABEL = "Read More Here"
DEFAULT_OPED_LABEL = "Read the op-ed"
MAX_IMAGE_SIDE = 10_000  # pixels; a larger figure is a typo, and it would be written into the HTML

# Links leave the email for the open web: the rule (absolute http(s), no invisible characters, spaces
# encoded, '%' only as an escape) is shared with the configured URLs in ``newsletter.urls``.
Url = HttpUrl


def _number_as_text(value: object) -> object:
    """Editors write ``value: 8``; the figure is shown as text, so a bare number is accepted."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


# The pairs of marks an editor may paste around a quote. Templates add their own, so one outer pair
# is dropped on loading; anything inside (a quotation within the quote) is kept.
QUOTE_MARK_PAIRS = {
    '"': '"',
    "'": "'",
    "\u201c": "\u201d",  # “ ”
    "\u201e": "\u201c",  # „ “
    "\u00ab": "\u00bb",  # « »
    "\u2018": "\u2019",  # single curly quotes
}


def strip_quote_marks(text: str) -> str:
    """``"“We stay.”"`` -> ``We stay.``: one matching pair of outer marks, then whitespace."""
    if len(text) >= 2 and QUOTE_MARK_PAIRS.get(text[0]) == text[-1]:
        inner = text[1:-1]
        # '"a" and "b"' is two quotations, not one wrapped in marks: keep it as written.
        if text[0] not in inner and text[-1] not in inner:
            return inner.strip()
    return text


QuoteText = Annotated[str, AfterValidator(strip_quote_marks)]
ImageSide = Annotated[int, Field(ge=1, le=MAX_IMAGE_SIDE)]


class Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, strict=True)


class Link(Block):
    url: Url
    label: str = DEFAULT_LINK_LABEL


class Image(Block):
    """A picture; ``width`` and ``height`` (its pixel size) let clients that block images keep its space.

    ``file`` names a local copy (relative to the issue file) whose size the loader reads when
    ``width`` and ``height`` are not written.
    """

    src: Url
    alt: str
    caption: str = ""
    credit: str = ""
    link: Url | None = None
    width: ImageSide | None = None
    height: ImageSide | None = None
    file: str = ""

    @model_validator(mode="after")
    def _both_sides(self) -> Image:
        if (self.width is None) != (self.height is None):
            raise ValueError("give both width and height (the image's size in pixels), or neither")
        return self


class Quote(Block):
    text: QuoteText
    attribution: str = ""


class Testimony(Block):
    quote: QuoteText
    speaker: str
    description: str = ""
    url: Url | None = None


class Oped(Block):
    """An opinion piece: shown "By <author>", with a button to it unless it has no URL."""

    title: str
    author: str = ""
    outlet: str = ""
    excerpt: str = ""
    url: Url | None = None
    label: str = DEFAULT_OPED_LABEL


# The parts of a story's body, each written as a one-key mapping (``- paragraph: ...``), rendered in
# the order written. The key names the part; ``PART_KINDS`` is the one list of them.
class ParagraphPart(Block):
    paragraph: str


class BulletsPart(Block):
    bullets: list[str]


class QuotePart(Block):
    quote: Quote


class ImagePart(Block):
    image: Image


class TestimoniesPart(Block):
    """Testimonies that belong to this story, shown inside it rather than as a section of their own."""

    testimonies: list[Testimony]


Part = ParagraphPart | BulletsPart | QuotePart | ImagePart | TestimoniesPart
PART_KINDS: dict[str, type[Part]] = {
    "paragraph": ParagraphPart,
    "bullets": BulletsPart,
    "quote": QuotePart,
    "image": ImagePart,
    "testimonies": TestimoniesPart,
}


def _part_kind(value: Any) -> str | None:
    """The first key naming a part; any other key is then reported as an unknown field."""
    if isinstance(value, dict):
        return next((key for key in value if key in PART_KINDS), None)
    return next((kind for kind, model in PART_KINDS.items() if isinstance(value, model)), None)


BodyPart = Annotated[
    Annotated[ParagraphPart, Tag("paragraph")]
    | Annotated[BulletsPart, Tag("bullets")]
    | Annotated[QuotePart, Tag("quote")]
    | Annotated[ImagePart, Tag("image")]
    | Annotated[TestimoniesPart, Tag("testimonies")],
    Discriminator(
        _part_kind,
        custom_error_type="body_part",
        custom_error_message="a body part is a mapping with one of: " + ", ".join(PART_KINDS),
    ),
]
SHORT_FORM_FIELDS = ("image", "summary", "quote", "bullets")


class Story(Block):
    """A news item. Its body is either ``body`` (parts in written order) or the short form.

    The short form (``summary``, ``quote``, ``bullets``, ``image``) is what most stories need and
    what older issue files use; it reads as image, summary, quote, bullets. ``deck`` is the one-line
    sub-headline under the headline.
    """

    headline: str
    url: Url | None = None
    source: str = ""
    deck: str = ""
    summary: str = ""
    quote: Quote | None = None
    bullets: list[str] = Field(default_factory=list)
    image: Image | None = None
    body: list[BodyPart] = Field(default_factory=list)
    links: list[Link] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_body(self) -> Story:
        if self.body and any(getattr(self, name) for name in SHORT_FORM_FIELDS):
            raise ValueError(
                "write the story's body either as `body` (parts in order) or with "
                "summary/quote/bullets/image, not both"
            )
        return self

    def parts(self) -> list[Part]:
        """The body in reading order, the short form turned into parts."""
        if self.body:
            return list(self.body)
        parts: list[Part] = []
        if self.image:
            parts.append(ImagePart(image=self.image))
        if self.summary:
            parts.append(ParagraphPart(paragraph=self.summary))
        if self.quote:
            parts.append(QuotePart(quote=self.quote))
        if self.bullets:
            parts.append(BulletsPart(bullets=self.bullets))
        return parts


class OpedItem(Block):
    """An op-ed placed among the stories of a news section: ``- oped: {title: ..., url: ...}``."""

    oped: Oped


def _story_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "oped" if "oped" in value else "story"
    return "oped" if isinstance(value, OpedItem) else "story"


StoryItem = Annotated[
    Annotated[Story, Tag("story")] | Annotated[OpedItem, Tag("oped")],
    Discriminator(_story_kind),
]


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
    stories: list[StoryItem] = Field(default_factory=list)


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


class OpedsSection(Block):
    kind: Literal["opeds"]
    title: str = "Op-eds"
    items: list[Oped] = Field(default_factory=list)


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

# The tags pydantic puts into an error's location after an item of these lists (``sections[3]`` is
# followed by ``"photos"``); the loader drops them to name the field as the editor wrote it.
UNION_TAGS: dict[str, frozenset[str]] = {
    "sections": frozenset(SECTION_KINDS),
    "stories": frozenset({"story", "oped"}),
    "body": frozenset(PART_KINDS),
}
