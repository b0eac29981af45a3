"""The embedded default: every message becomes an ``.eml`` file under ``outbox/<send>/``.

Nothing leaves the machine, so the whole flow (ledger, batching, headers, resume) runs without an
account; any mail client opens the files. Each file is written to a temporary name and renamed into
place, so a crash never leaves half a message, and a resent message replaces its file instead of
adding a second one. A copy outside the ledger (a ``--test`` copy, whose delivery id is negative)
is written as ``test-N.eml``: a file name starting with a dash would read as an option to shell tools.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from newsletter.delivery.esp.account import Account, AccountError, ProviderDns
from newsletter.delivery.esp.base import Outcome, Outgoing, Recipient, Result
from newsletter.delivery.message import MimeTemplate

__all__ = ["DNS", "OutboxAdapter", "file_name"]

#: Nothing leaves the machine: no DNS is needed.
DNS: Final = ProviderDns()


def file_name(delivery_id: int) -> str:
    """``42.eml`` for a delivery of the ledger, ``test-1.eml`` for a copy outside it (id -1)."""
    return f"{delivery_id}.eml" if delivery_id >= 0 else f"test{delivery_id}.eml"


class OutboxAdapter:
    name = "outbox"
    max_batch = 1000

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._templates: dict[int, MimeTemplate] = {}

    def folder(self, send_id: int) -> Path:
        return self.directory / str(send_id)

    def prepare(self, message: Outgoing) -> None:
        self.folder(message.send_id).mkdir(parents=True, exist_ok=True)
        self._templates[message.send_id] = MimeTemplate(message)

    def send_batch(self, message: Outgoing, recipients: Sequence[Recipient]) -> list[Result]:
        template = self._templates.get(message.send_id)
        if template is None:
            self.prepare(message)
            template = self._templates[message.send_id]
        folder = self.folder(message.send_id)
        results = []
        for recipient in recipients:
            _write_atomically(folder / file_name(recipient.delivery_id), template.build(recipient))
            results.append(Result(recipient.delivery_id, Outcome.ACCEPTED, recipient.message_id))
        return results

    def finish(self, message: Outgoing) -> None:
        """Nothing was made at a provider."""

    def account(self, from_domain: str) -> Account:
        """The outbox is a folder: it can take mail if it, or the folder it will be made in, is
        writable. Nothing is created: the doctor only looks."""
        folder = self.directory.absolute()
        existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise AccountError(f"the outbox folder {self.directory} cannot be written (nor made)")
        return Account(summary=f"outbox folder {self.directory}: messages are written there, not delivered")

    def close(self) -> None:
        self._templates.clear()


def _write_atomically(path: Path, data: bytes) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
