"""Imports follow the data path (issue file -> content -> render -> store -> delivery -> events):
a package never imports one that comes after it, so content knows nothing of rendering, rendering
nothing of the store, and the ESP adapters nothing of the ledger."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "newsletter"
#: What each part of the package must never import (any module below these names).
FORBIDDEN = {
    "content": ("render", "store", "delivery", "events", "schedule", "report", "web", "cli"),
    "render": ("store", "delivery", "events", "schedule", "report", "web", "cli"),
    "store": ("delivery", "events", "schedule", "report", "web", "cli"),
    "delivery/esp": ("store", "events", "schedule", "report", "web", "cli"),
    "events": ("delivery", "schedule", "report", "web", "cli"),
}
#: Exceptions, each a data type only: the store keeps every stage's rows, events included, and
#: takes a provider's event in the neutral form the webhook modules parse it into.
ALLOWED = {"store": ("newsletter.events.model",)}


def imported_modules(path: Path) -> set[str]:
    """Every ``newsletter.*`` module a file imports, at its top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.startswith("newsletter.")}


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_a_part_never_imports_what_comes_after_it(part: str) -> None:
    banned = tuple(f"newsletter.{name}" for name in FORBIDDEN[part])
    found = {
        f"{path.relative_to(ROOT)} imports {module}"
        for path in (PACKAGE / part).rglob("*.py")
        for module in imported_modules(path)
        if module.startswith(banned) and module.split(".")[1] in FORBIDDEN[part]
        and not module.startswith(ALLOWED.get(part, ()))
    }
    assert not found, sorted(found)


def test_the_rule_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from newsletter.store.db import writing\n", encoding="utf-8")
    assert imported_modules(module) == {"newsletter.store.db", "newsletter.store.db.writing"}
