"""Imports follow the data path (issue file -> content -> render -> store -> delivery -> events):
a package never imports one that comes after it, so content knows nothing of rendering, rendering
nothing of the store, and the ESP adapters nothing of the ledger. The development tools
(``newsletter.devtools``: the fake ESP) are no stage of it: only ``newsletter dev`` imports them
(and the tests and benchmarks), never the data path."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "newsletter"
#: What each part of the package must never import (any module below these names).
FORBIDDEN = {
    "content": (
        "checks", "render", "store", "delivery", "events", "schedule", "report", "web", "cli", "doctor"
    ),
    "checks": ("render", "store", "delivery", "events", "schedule", "report", "web", "cli", "doctor"),
    "render": ("store", "delivery", "events", "schedule", "report", "web", "cli", "doctor"),
    "store": ("delivery", "events", "schedule", "report", "web", "cli", "doctor"),
    "delivery/esp": ("checks", "store", "events", "schedule", "report", "web", "cli", "doctor"),
    "events": ("delivery", "schedule", "report", "web", "cli", "doctor"),
    # the doctor reads every stage; only the CLI (and nothing of the data path) reads the doctor
    "doctor": ("cli", "web"),
}
#: Exceptions, each a data type only: the store keeps every stage's rows, events included, and
#: takes a provider's event in the neutral form the webhook modules parse it into.
ALLOWED = {"store": ("newsletter.events.model",)}
#: The only modules of the package that may import the development tools, besides their own.
DEVTOOLS_USERS = ("newsletter/devtools/", "newsletter/cli/dev.py")


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


def devtools_imports(root: Path) -> set[str]:
    """``file imports module`` for each import of ``newsletter.devtools`` in the package below
    ``root`` by a module outside :data:`DEVTOOLS_USERS`."""
    return {
        f"{relative} imports {module}"
        for path in (root / "newsletter").rglob("*.py")
        if not (relative := path.relative_to(root).as_posix()).startswith(DEVTOOLS_USERS)
        for module in imported_modules(path)
        if module == "newsletter.devtools" or module.startswith("newsletter.devtools.")
    }


def test_nothing_but_newsletter_dev_imports_the_dev_tools() -> None:
    assert not devtools_imports(ROOT), sorted(devtools_imports(ROOT))


def test_the_dev_tools_rule_finds_a_data_path_import(tmp_path: Path) -> None:
    files = {
        "newsletter/delivery/engine.py": "def f():\n    from newsletter.devtools.fake_esp import FakeESP\n",
        "newsletter/web/app.py": "import newsletter.devtools\n",
        "newsletter/cli/send.py": "from newsletter.devtools import fake_esp\n",
        "newsletter/cli/dev.py": "from newsletter.devtools.fake_esp import serve\n",
        "newsletter/devtools/fake_esp/app.py": "from newsletter.devtools.fake_esp.faults import Faults\n",
        "newsletter/delivery/devtools.py": "from newsletter.delivery import engine\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert devtools_imports(tmp_path) == {
        "newsletter/delivery/engine.py imports newsletter.devtools.fake_esp",
        "newsletter/delivery/engine.py imports newsletter.devtools.fake_esp.FakeESP",
        "newsletter/web/app.py imports newsletter.devtools",
        "newsletter/cli/send.py imports newsletter.devtools",
        "newsletter/cli/send.py imports newsletter.devtools.fake_esp",
    }


def test_delivery_holds_no_fake() -> None:
    """The fake ESP and its template languages live in devtools, not beside what a send runs."""
    delivery = {path.relative_to(PACKAGE).as_posix() for path in (PACKAGE / "delivery").rglob("*.py")}
    assert not {name for name in delivery if "fake" in name or "handlebars" in name}, sorted(delivery)
