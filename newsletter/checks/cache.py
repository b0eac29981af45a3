"""The link check's cache: one JSON file under the user's cache directory, one entry per URL.

A file, not the service's database: ``check --links`` runs on an editor's machine with no database
set up, and a cache lost costs only a re-check. A good answer is kept ``[check] cache_good_seconds``
(a day), a bad one ``cache_bad_seconds`` (an hour), so a link that was down is soon asked again.
Writes replace the file atomically; two runs at once lose at most the other's new entries.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from newsletter.config import CheckSettings
from newsletter.content.links import LinkResult, is_good

__all__ = ["MAX_ENTRIES", "LinkCache", "default_cache_file"]

#: Entries kept at most (the newest); a week of issues holds a few hundred.
MAX_ENTRIES = 50_000
_VERSION = 1


def default_cache_file() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("newsletter")) / "links.json"


class LinkCache:
    def __init__(self, path: Path, *, good_seconds: int, bad_seconds: int) -> None:
        self.path, self.good_seconds, self.bad_seconds = path, good_seconds, bad_seconds
        self._entries: dict[str, LinkResult] | None = None

    @classmethod
    def for_settings(cls, config: CheckSettings) -> LinkCache:
        return cls(
            config.cache_file or default_cache_file(),
            good_seconds=config.cache_good_seconds,
            bad_seconds=config.cache_bad_seconds,
        )

    def _load(self) -> dict[str, LinkResult]:
        if self._entries is None:
            self._entries = {}
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                if data.get("version") == _VERSION:
                    for raw in data.get("entries", []):
                        result = LinkResult.from_dict(raw)
                        self._entries[result.url] = result
            except (OSError, ValueError, TypeError, KeyError, AttributeError):
                self._entries = {}  # missing or damaged: a cache starts again
        return self._entries

    def _fresh(self, result: LinkResult, now: float) -> bool:
        ttl = self.good_seconds if is_good(result) else self.bad_seconds
        return now - result.checked_at < ttl

    def get_many(self, urls: Sequence[str]) -> dict[str, LinkResult]:
        entries, now = self._load(), time.time()
        found = {}
        for url in urls:
            result = entries.get(url)
            if result is not None and self._fresh(result, now):
                found[url] = LinkResult(**{**result.__dict__, "cached": True})
        return found

    def put_many(self, results: Iterable[LinkResult]) -> None:
        entries, now = self._load(), time.time()
        for result in results:
            entries[result.url] = result
        kept = sorted((r for r in entries.values() if self._fresh(r, now)), key=lambda r: r.checked_at)
        kept = kept[-MAX_ENTRIES:]
        self._entries = {result.url: result for result in kept}
        self._write([result.as_dict() for result in kept])

    def _write(self, entries: list[dict[str, object]]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=".links-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump({"version": _VERSION, "entries": entries}, out, separators=(",", ":"))
            os.replace(temp, self.path)
        except OSError:
            pass  # a read-only home still checks links, without a cache
