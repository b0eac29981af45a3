"""The rejects file: every bad row of an import, with its line and reason, beside the input."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import IO, Any

from newsletter.store.importer.rows import NUL, REJECTS_COLUMNS, escape_cell

__all__ = ["NUL_SHOWN", "RejectsWriter", "rejects_path_for"]

#: The rejects file shows a NUL character as this visible symbol, so that the file stays readable by
#: spreadsheets and other CSV tools.
NUL_SHOWN = "\u2400"  # SYMBOL FOR NULL


def rejects_path_for(path: Path) -> Path:
    """``list.csv`` -> ``list.rejects.csv``, next to the input where the operator will look."""
    stem = path.stem if path.suffix.lower() == ".csv" else path.name
    return path.with_name(f"{stem}.rejects.csv")


class RejectsWriter:
    """Writes bad rows to ``FILE.rejects.csv``, created only when there is a first one.

    Cells are written as export writes them (:func:`escape_cell`), so the file is safe to open in a
    spreadsheet and a fixed copy imports the same values; a NUL character is shown as ``\u2400``.
    """

    def __init__(self, path: Path, header: list[str]) -> None:
        self.path = path
        # A rejects file re-imported after fixing keeps one line/reason pair, not two.
        self.keep = [i for i, cell in enumerate(header) if cell.strip().lower() not in REJECTS_COLUMNS]
        self.header = [_safe_cell(header[i]) for i in self.keep]
        self.handle: IO[str] | None = None
        self.writer: Any = None

    def write(self, line: int, cells: list[str], reason: str) -> None:
        if self.writer is None:
            self.handle = self.path.open("w", encoding="utf-8", newline="")
            self.writer = csv.writer(self.handle)
            self.writer.writerow([*self.header, "line", "reason"])
        kept = (_safe_cell(cells[i]) if i < len(cells) else "" for i in self.keep)
        self.writer.writerow([*kept, line, _safe_cell(reason)])

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def _safe_cell(value: str) -> str:
    return escape_cell(value.replace(NUL, NUL_SHOWN) if NUL in value else value)
