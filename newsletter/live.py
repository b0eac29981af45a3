"""The live preview's state and its file watch: re-render on every save, keep the last good render.

No HTTP here (``newsletter.web.preview`` serves it). :class:`LivePreview` holds one
:class:`Snapshot` at a time; every rebuild publishes a new one with a higher ``version`` and wakes
whoever waits for a change (the server-sent event streams). A save that does not load (a YAML
error, an unknown field) or does not render becomes the snapshot's ``problems`` while ``good``
stays the last render that worked, so the editor sees what broke without losing the page.
An issue that loads but fails a lint still renders: the editor is mid-way through a story and
wants to see it; the findings say that ``send`` would refuse it.

The watch follows the issue's *folder*, not the file: editors save by writing a new file and
renaming it over the old one, and a watch on the old inode would go quiet after the first save.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from newsletter.config import NewsletterSettings
from newsletter.content.loader import IssueFileError, Problem
from newsletter.errors import NewsletterError
from newsletter.preview import Preview, render_preview

#: How long watchfiles waits for more changes before reporting a burst, in ms. An editor's save is
#: one write or one rename; 10 ms groups it and keeps the save-to-page time well under 150 ms.
WATCH_STEP_MS = 10

_DARK_QUERY = re.compile(r"@media\s*\(\s*prefers-color-scheme\s*:\s*dark\s*\)", re.IGNORECASE)
_LIGHT_QUERY = re.compile(r"@media\s*\(\s*prefers-color-scheme\s*:\s*light\s*\)", re.IGNORECASE)
_COLOR_SCHEME = re.compile(r"(color-scheme\s*:\s*|content=\"?)light dark", re.IGNORECASE)


def force_dark(html: str) -> str:
    """The email as a dark-mode client shows it, whatever the preference of the page around it.

    An ``<iframe>`` does not reliably get ``prefers-color-scheme`` from its parent, so the email's
    own dark rules are made unconditional (and its light-only rules void) instead.
    """
    html = _DARK_QUERY.sub("@media all", html)
    html = _LIGHT_QUERY.sub("@media not all", html)
    return _COLOR_SCHEME.sub(r"\1dark", html)


@dataclass(frozen=True)
class Snapshot:
    """The state after one rebuild; ``good`` is the newest render that worked (None: none yet)."""

    version: int
    good: Preview | None
    good_version: int
    problems: list[Problem] = field(default_factory=list)
    render_ms: float = 0.0
    finished_at: float = 0.0  #: ``time.time()`` when the rebuild ended

    @property
    def broken(self) -> bool:
        return bool(self.problems)


class LivePreview:
    """One issue file, rebuilt on demand; async waiters learn of each new snapshot."""

    def __init__(
        self, path: Path, settings: NewsletterSettings, values: Mapping[str, str] | None = None
    ) -> None:
        self.path = path.resolve()
        self.settings = settings
        self.values = values
        self.snapshot = Snapshot(version=0, good=None, good_version=0)
        self._changed = asyncio.Event()

    def build(self) -> Snapshot:
        """Render the file as it is now into the next snapshot (blocking; not yet published)."""
        previous = self.snapshot
        version = previous.version + 1
        started = time.perf_counter()
        try:
            good = render_preview(self.path, self.settings, self.values)
        except IssueFileError as exc:
            problems = exc.problems
        except NewsletterError as exc:
            problems = [Problem(str(self.path), 1, 1, "", str(exc))]
        except OSError as exc:  # deleted or unreadable between the save and the read
            problems = [Problem(str(self.path), 1, 1, "", f"cannot read the file: {exc.strerror or exc}")]
        else:
            return Snapshot(version, good, version, [], _ms_since(started), time.time())
        return Snapshot(
            version, previous.good, previous.good_version, problems, _ms_since(started), time.time()
        )

    def publish(self, snapshot: Snapshot) -> None:
        """Make ``snapshot`` current and wake every waiter (call on the event loop's thread)."""
        self.snapshot = snapshot
        woken, self._changed = self._changed, asyncio.Event()
        woken.set()

    async def refresh(self) -> Snapshot:
        """Rebuild off the event loop, then publish."""
        snapshot = await asyncio.to_thread(self.build)
        self.publish(snapshot)
        return snapshot

    async def changed_since(self, version: int, timeout: float) -> Snapshot | None:
        """The current snapshot once it is newer than ``version``; None after ``timeout`` seconds."""
        while self.snapshot.version <= version:
            try:
                await asyncio.wait_for(self._changed.wait(), timeout)
            except TimeoutError:
                return None
        return self.snapshot

    async def follow(self, stop: asyncio.Event | None = None) -> None:
        """Rebuild on every save of the file until ``stop`` is set (or the task is cancelled)."""
        from watchfiles import awatch  # a Rust extension: loaded only by the live preview

        target = self.path

        def is_target(_change: object, changed: str) -> bool:
            return Path(changed) == target

        async for _changes in awatch(
            target.parent,
            watch_filter=is_target,
            step=WATCH_STEP_MS,
            recursive=False,
            stop_event=stop,
        ):
            await self.refresh()


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
