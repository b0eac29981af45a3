"""Markdown in editor text: emphasis, links and lists only; raw HTML is always escaped.

One restricted markdown-it parser serves both outputs: HTML for the email (with inline styles,
because many email clients drop ``<style>``), and plain text for the text part, where a link keeps
its URL so a reader of the text part can still follow it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.token import Token
from markupsafe import Markup

from newsletter.render.slots import neutralise_html, neutralise_text

LINK_STYLE = "color:#9b1c1c;text-decoration:underline"
PARAGRAPH_STYLE = "margin:0 0 12px"
LIST_STYLE = "margin:0 0 12px;padding-left:22px"


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    parser = MarkdownIt("zero", {"html": False, "typographer": False})
    parser.enable(["emphasis", "link", "autolink", "list", "newline", "escape", "entity"])
    parser.validateLink = _http_only  # type: ignore[method-assign]
    return parser


# Characters that can start Markdown syntax with the rules enabled above. Text without any of them
# (most headlines, bullets and captions) renders to itself, so the parser is skipped for it.
_SYNTAX = re.compile(r"[*_\[\]<>&\\`\n\r]|^\s*(?:[-+]|\d{1,9}[.)])(?:\s|$)")


def _is_plain(text: str) -> bool:
    return _SYNTAX.search(text) is None


def _http_only(url: str) -> bool:
    return url.strip().lower().startswith(("http://", "https://"))


def _style(tokens: Sequence[Token]) -> None:
    for token in tokens:
        if token.type == "link_open":
            token.attrSet("style", LINK_STYLE)
        elif token.type == "paragraph_open" and not token.hidden:
            token.attrSet("style", PARAGRAPH_STYLE)
        elif token.type in ("bullet_list_open", "ordered_list_open"):
            token.attrSet("style", LIST_STYLE)
        if token.children:
            _style(token.children)


def to_html(text: str, *, styled: bool = True) -> Markup:
    """Block Markdown (paragraphs and lists) to HTML, inline-styled for email unless not ``styled``
    (the web archive styles with its stylesheet, under a CSP that refuses inline styles)."""
    if not text.strip():
        return Markup("")
    if _is_plain(text):
        style = f' style="{PARAGRAPH_STYLE}"' if styled else ""
        return Markup(f"<p{style}>{neutralise_html(escapeHtml(text.strip()))}</p>")
    return _render(_parser().parse(text), styled)


def to_inline_html(text: str, *, styled: bool = True) -> Markup:
    """One line of Markdown (emphasis and links) without a wrapping paragraph."""
    if not text.strip():
        return Markup("")
    if _is_plain(text):
        return Markup(neutralise_html(escapeHtml(text.strip())))
    return _render(_parser().parseInline(text), styled)


def to_web_html(text: str) -> Markup:
    return to_html(text, styled=False)


def to_web_inline_html(text: str) -> Markup:
    return to_inline_html(text, styled=False)


def _render(tokens: list[Token], styled: bool = True) -> Markup:
    parser = _parser()
    if styled:
        _style(tokens)
    return Markup(neutralise_html(parser.renderer.render(tokens, parser.options, {}).strip()))


def to_text(text: str) -> str:
    """Markdown to plain text: emphasis dropped, links as ``label (url)``, list items as ``- x``."""
    if not text.strip():
        return ""
    if _is_plain(text):
        return neutralise_text(text.strip())
    tokens = _parser().parse(text)
    blocks: list[tuple[str, bool]] = []  # (text, is a list item)
    prefix_stack: list[list[int]] = []  # one [next number or -1 for bullets] per open list
    for token in tokens:
        if token.type == "bullet_list_open":
            prefix_stack.append([-1])
        elif token.type == "ordered_list_open":
            prefix_stack.append([int(token.attrGet("start") or 1)])
        elif token.type in ("bullet_list_close", "ordered_list_close"):
            prefix_stack.pop()
        elif token.type == "inline":
            line = _inline_text(token.children or [])
            if prefix_stack:
                counter = prefix_stack[-1]
                indent = "  " * (len(prefix_stack) - 1)
                if counter[0] < 0:
                    line = f"{indent}- {line}"
                else:
                    line = f"{indent}{counter[0]}. {line}"
                    counter[0] += 1
            blocks.append((line, bool(prefix_stack)))
    out = ""
    for index, (line, in_list) in enumerate(blocks):
        if index:
            out += "\n" if in_list and blocks[index - 1][1] else "\n\n"
        out += line
    return neutralise_text(out)


def inline_to_text(text: str) -> str:
    if not text.strip():
        return ""
    if _is_plain(text):
        return neutralise_text(text.strip())
    return neutralise_text(_inline_text(_parser().parseInline(text)[0].children or []))


def _inline_text(children: Sequence[Token]) -> str:
    out: list[str] = []
    href: str | None = None
    label_start = 0
    for child in children:
        if child.type == "link_open":
            href = str(child.attrGet("href") or "")
            label_start = len(out)
        elif child.type == "link_close":
            label = "".join(out[label_start:])
            if href and label.strip() != href:
                out.append(f" ({href})")
            href = None
        elif child.type in ("text", "code_inline"):
            out.append(child.content)
        elif child.type == "softbreak":
            # A line break in the source is not one in the text: the text part is wrapped again
            # at 72 columns, and keeping the editor's breaks gave ragged lines.
            out.append(" ")
        elif child.type == "hardbreak":
            out.append("\n")
    return "".join(out)
