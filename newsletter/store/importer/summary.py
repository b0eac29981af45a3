"""What an import did, as :func:`~newsletter.store.importer.import_csv` returns it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ImportSummary", "RejectedRow"]


@dataclass(frozen=True)
class RejectedRow:
    line: int
    reason: str


@dataclass
class ImportSummary:
    path: Path
    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    invalid: int = 0  #: rows rejected as bad input (a subset of ``skipped``)
    rejects: list[RejectedRow] = field(default_factory=list)  #: the first bad rows
    rejects_path: Path | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())
