"""``newsletter --help`` and ``check`` load only what they use, so the CLI answers at once.

Not timed (a loaded machine would make that flaky; ``benchmarks/cli.py`` measures): each case runs
the real entry point in a fresh interpreter and lists the modules it imported. A command module
that imports the store, the renderer or an HTTP client at its top breaks this test, not a stopwatch.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, SAMPLE_ISSUES, clean_environment

#: Run ``python -m newsletter ARGS`` in-process, then print the top-level packages it imported.
PROBE = """
import json, runpy, sys
sys.argv = ["newsletter", *sys.argv[1:]]
try:
    runpy.run_module("newsletter", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
print("\\n" + json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""

#: What a database, a send or a render needs, and --help does not. (Not pydantic: typer 0.29
#: itself builds each command's parameters with it.)
HEAVY = ("sqlalchemy", "alembic", "httpx", "jinja2", "mjml", "yaml", "uvicorn", "starlette")


def _imported(*args: str) -> tuple[int, set[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=clean_environment(),
        check=False,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["code"], set(result["modules"])


def _packages(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


@pytest.mark.parametrize(
    "args",
    [["--help"], ["send", "--help"], ["subscribers", "--help"], ["subscribers", "count", "--help"]],
    ids=" ".join,
)
def test_help_imports_no_database_renderer_or_http_client(args: list[str]) -> None:
    code, modules = _imported(*args)
    assert code == 0
    assert not _packages(modules) & set(HEAVY), sorted(_packages(modules) & set(HEAVY))
    assert "newsletter.store.models" not in modules and "newsletter.demo" not in modules


def test_check_imports_no_database_or_http_client() -> None:
    code, modules = _imported("check", str(max(SAMPLE_ISSUES, key=lambda path: path.stat().st_size)))
    assert code == 0
    assert "newsletter.content.checks" in modules  # it really checked
    assert not _packages(modules) & {"sqlalchemy", "alembic", "httpx", "uvicorn", "starlette"}
