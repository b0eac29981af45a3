"""The record: one JSON line per accepted message, with what a test or a benchmark checks.

A line holds the provider, recipient, ``to``, subject, headers (a name → value object),
``message_id`` (the id answered), the provider's own fields (stream, metadata, tags, template…),
the sizes and SHA-256 of both bodies, and the text body itself (``record_bodies="text"``, the
default; ``"all"`` adds the HTML, ``"none"`` keeps only the hashes: about 0.8 KB a line instead of
the text's size, the setting for a million-recipient benchmark). Lines go through a 1 MiB buffer,
flushed once per request. The part of a body before its first tag or substitution is hashed once,
so a message's SHA-256 costs only its personal tail.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

__all__ = ["Body", "CompiledBody", "Part", "RecordBodies", "Recorder", "Substituted"]

RecordBodies = Literal["none", "text", "all"]
#: A compiled template's piece: a literal string, or a tag as ``(path, escaped)`` (Mustachio and
#: Handlebars alike).
Part = str | tuple[str, bool]


@dataclass(slots=True)
class Body:
    """A rendered body as ``head + tail``: ``head`` is the template's text before its first tag,
    shared by every message and hashed once, so recording a message's SHA-256 costs only the
    tail (for a newsletter, the footer with the unsubscribe link)."""

    head: str
    head_size: int
    head_hash: Any  # a hashlib object over ``head``, or None when ``head`` is empty
    tail: str

    @classmethod
    def plain(cls, text: str) -> Body:
        return cls("", 0, None, text)

    def text(self) -> str:
        return self.head + self.tail

    def digest(self) -> tuple[int, str]:
        """``(size in UTF-8 bytes, SHA-256 hex)`` of the whole body."""
        data = self.tail.encode("utf-8")
        hasher = self.head_hash.copy() if self.head_hash is not None else hashlib.sha256()
        hasher.update(data)
        return self.head_size + len(data), hasher.hexdigest()


class _Head:
    """A body's literal head, its size and its hash, computed once."""

    head: str
    head_size: int
    head_hash: Any

    def _set_head(self, head: str) -> None:
        self.head = head
        head_bytes = head.encode("utf-8")
        self.head_size = len(head_bytes)
        self.head_hash = hashlib.sha256(head_bytes) if head_bytes else None


class CompiledBody(_Head):
    """One template field compiled once: its literal head, and the parts from the first tag on."""

    def __init__(
        self,
        source: str,
        compiler: Callable[[str], list[Part]],
        renderer: Callable[[Sequence[Part], dict[str, Any]], str],
    ) -> None:
        """``compiler`` and ``renderer``: the provider's template language (Mustachio for
        Postmark, Handlebars for SES)."""
        parts = compiler(source)
        self.renderer = renderer
        first_tag = next((i for i, part in enumerate(parts) if not isinstance(part, str)), len(parts))
        self._set_head("".join(part for part in parts[:first_tag] if isinstance(part, str)))
        self.tail = parts[first_tag:]

    def render(self, model: dict[str, Any]) -> Body:
        return Body(self.head, self.head_size, self.head_hash, self.renderer(self.tail, model))


class Substituted(_Head):
    """A content part split before its first substitution key: the head is hashed once per request,
    each recipient costs only its tail (as :class:`CompiledBody` for templates)."""

    def __init__(self, source: str, pattern: re.Pattern[str] | None) -> None:
        self.pattern = pattern
        match = pattern.search(source) if pattern is not None else None
        start = match.start() if match else len(source)
        self._set_head(source[:start])
        self.tail = source[start:]

    def render(self, substitutions: dict[str, str]) -> Body:
        tail = self.tail
        if self.pattern is not None and tail:
            tail = self.pattern.sub(lambda match: substitutions.get(match.group(0), match.group(0)), tail)
        return Body(self.head, self.head_size, self.head_hash, tail)


class Recorder:
    """Appends JSON lines through a 1 MiB buffer; :meth:`write` flushes once per request."""

    def __init__(self, path: Path, bodies: RecordBodies = "text") -> None:
        self.path = path
        self.bodies = bodies
        self._file: IO[str] = path.open("a", encoding="utf-8", buffering=1 << 20)
        self._lock = threading.Lock()

    def entry(self, base: dict[str, Any], subject: str, body_html: Body, text: Body) -> dict[str, Any]:
        """``base`` (the provider's fields) with the subject and both bodies' sizes and hashes."""
        html_size, html_sha256 = body_html.digest()
        text_size, text_sha256 = text.digest()
        entry = {
            **base,
            "subject": subject,
            "html_size": html_size,
            "html_sha256": html_sha256,
            "text_size": text_size,
            "text_sha256": text_sha256,
        }
        if self.bodies != "none":
            entry["text"] = text.text()
        if self.bodies == "all":
            entry["html"] = body_html.text()
        return entry

    def write(self, entries: list[dict[str, Any]]) -> None:
        if not entries:
            return
        lines = "".join(
            json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n" for entry in entries
        )
        with self._lock:
            self._file.write(lines)
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()
