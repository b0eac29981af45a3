"""The doctor's findings: one line each, ✔ fine, ! worth fixing, ✘ will make a send fail or land
in spam; and the report they add up to (exit 1 when any line fails, ``--json``)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Check", "Report", "Status"]


class Status(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"

    @property
    def mark(self) -> str:
        return {"ok": "✔", "warn": "!", "fail": "✘"}[self.value]


@dataclass(frozen=True, slots=True)
class Check:
    """One line: what was checked, what was found, and (unless fine) the fix."""

    section: str
    name: str
    status: Status
    found: str
    fix: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "name": self.name,
            "status": str(self.status),
            "found": self.found,
            "fix": self.fix,
        }


def ok(section: str, name: str, found: str) -> Check:
    return Check(section, name, Status.OK, found)


def warn(section: str, name: str, found: str, fix: str = "") -> Check:
    return Check(section, name, Status.WARN, found, fix)


def fail(section: str, name: str, found: str, fix: str = "") -> Check:
    return Check(section, name, Status.FAIL, found, fix)


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(check.status is Status.FAIL for check in self.checks)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def counts(self) -> dict[str, int]:
        return {str(status): sum(c.status is status for c in self.checks) for status in Status}

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` document: ``{"ok": bool, "counts": {...}, "checks": [line, ...]}``."""
        return {"ok": not self.failed, "counts": self.counts(), "checks": [c.as_dict() for c in self.checks]}
