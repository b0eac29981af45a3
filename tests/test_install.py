"""The wheel works on its own: built from this tree, installed (not editable) in a fresh virtual
environment with the locked runtime dependencies, ``newsletter db upgrade`` and ``newsletter demo``
run in an empty directory, far from any checkout. Templates, migrations and samples must therefore
ship inside the package: the top-level templates/ and migrations/ as ``newsletter.templates`` and
``newsletter.migrations`` (mapped by pyproject.toml and setup.py), samples as package data.

Offline: the wheel is built with the build backend already in .venv (pinned in the lock), and the
dependencies come from uv's cache, which scripts/setup.sh filled.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from newsletter.store.db import head_revision
from tests.conftest import ROOT, clean_environment

SOURCES = ("pyproject.toml", "setup.py", "README.md", "newsletter", "templates", "migrations")
CACHE_HINT = (
    "\nuv's cache lacks a locked file; fill it with `.venv/bin/uv pip install --python .venv/bin/python"
    " --reinstall --require-hashes -r requirements-test.lock` (scripts/setup.sh does on a new .venv)"
)


def _uv() -> str:
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.exists() else shutil.which("uv")
    if found is None:
        pytest.fail("uv is not installed: run scripts/setup.sh")
    return found


def _run(command: list[str | Path], cwd: Path, timeout: int = 120, hint: str = "") -> str:
    env = clean_environment()
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_PROJECT_ENVIRONMENT"):
        env.pop(name, None)
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{output}{hint}"
    return output


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin/`` folder of a fresh venv with the wheel and the locked runtime dependencies."""
    base = tmp_path_factory.mktemp("install")
    # Build from a copy, so the build leaves nothing (build/, *.egg-info) in the working tree.
    source = base / "source"
    source.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / name)
    uv, dist, venv = _uv(), base / "dist", base / "venv"
    _run([uv, "build", "--wheel", "--offline", "--no-build-isolation", "--python", sys.executable,
          "--out-dir", dist, source], cwd=base)  # fmt: skip
    (wheel,) = dist.glob("newsletter-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "newsletter/templates/email/base.mjml.j2",
        "newsletter/templates/draft/issue.yaml.j2",
        "newsletter/migrations/env.py",
        "newsletter/migrations/script.py.mako",
        f"newsletter/migrations/versions/{head_file()}",
        "newsletter/samples/subscribers.csv",
        "newsletter/samples/issues/2026-11-27.yaml",
    ):
        assert expected in names, f"{expected} is not in {wheel.name}"
    _run([uv, "venv", "--offline", "--python", sys.executable, venv], cwd=base)
    python = venv / "bin" / "python"
    _run([uv, "pip", "install", "--offline", "--python", python, "--require-hashes",
          "-r", ROOT / "requirements.lock"], cwd=base, hint=CACHE_HINT)  # fmt: skip
    _run([uv, "pip", "install", "--offline", "--python", python, "--no-deps", wheel], cwd=base)
    return venv / "bin"


def head_file() -> str:
    """The file name of the newest migration in this tree."""
    versions = ROOT / "migrations" / "versions"
    (path,) = [p for p in versions.glob("*.py") if p.name.startswith(f"{head_revision()}_")]
    return path.name


def test_templates_and_migrations_sit_at_the_top_of_the_repository() -> None:
    """The layout the project states: the folders a reader looks for first are where they are named."""
    for folder in ("templates/email", "templates/draft", "migrations/versions"):
        assert (ROOT / folder).is_dir(), f"{folder}/ is not at the repository's top level"
    assert (ROOT / "migrations" / "env.py").is_file()
    assert not (ROOT / "newsletter" / "templates").exists()
    assert not (ROOT / "newsletter" / "migrations").exists()
    assert "script_location = %(here)s/migrations" in (ROOT / "alembic.ini").read_text(encoding="utf-8")


def test_installed_wheel_migrates_and_runs_the_demo_in_an_empty_directory(
    installed: Path, tmp_path: Path
) -> None:
    work = tmp_path / "empty"
    work.mkdir()
    location = _run([installed / "python", "-c", "import newsletter; print(newsletter.__file__)"], cwd=work)
    assert str(installed.parent) in location and str(ROOT) not in location  # the wheel, not this tree
    shipped = "from importlib.resources import files; print(files('newsletter.templates'))"
    shipped += "; print(files('newsletter.migrations'))"
    folders = _run([installed / "python", "-c", shipped], cwd=work).split()
    assert all(str(installed.parent) in folder and str(ROOT) not in folder for folder in folders), folders

    upgraded = _run([installed / "newsletter", "db", "upgrade"], cwd=work)
    head = head_revision()
    assert head in upgraded
    with sqlite3.connect(work / "newsletter.db") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(head,)]

    demo = _run([installed / "newsletter", "demo"], cwd=work)
    assert "packaged sample" in demo, demo
    html = work / "out" / "2026-11-27" / "email.html"
    assert html.read_text(encoding="utf-8").startswith("<!doctype html>")
    assert (work / "out" / "2026-11-27" / "email.txt").stat().st_size > 0
    assert "30 added, 0 unchanged" in demo and "30 active" in demo
    # The archive's templates and stylesheet ship too: the demo's static site has both.
    site = work / "out" / "site"
    assert "<title>" in (site / "issues" / "2026-11-27" / "index.html").read_text(encoding="utf-8")
    assert [css.stat().st_size > 1000 for css in (site / "assets").glob("archive-*.css")] == [True]
    again = _run([installed / "newsletter", "demo"], cwd=work)
    assert "0 added, 30 unchanged" in again
