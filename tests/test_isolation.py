"""The suite depends on nothing outside it: not on the live ``issues/`` folder, where editors keep
work in progress, nor on the shell's ``NEWSLETTER_*`` settings."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import FIXTURE_ISSUES_DIR, KEPT_VARIABLES, ROOT, SAMPLE_ISSUES, clean_environment

# The run below takes the modules at the top of tests/, which read issue files and settings; the
# packages below (store/, ...: minutes on a small machine) run under the same conftest. This file and
# the install test are left out to keep it quick.
NESTED = sorted(
    f"tests/{path.name}"
    for path in (ROOT / "tests").glob("test_*.py")
    if path.name not in {"test_install.py", Path(__file__).name}
)
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", "*_cache", ".hypothesis", "__pycache__", "node_modules", ".data", "out", "build",
    "*.egg-info", "*.db", "*.db-*",
)  # fmt: skip
BROKEN_DRAFT = """\
title: Arvel Valley Weekly
date: 2026-12-04
subject: "Half written
sections:
  - kind: headlines
    items: [
"""


def test_fixture_issues_are_the_tests_own():
    assert [path.name for path in SAMPLE_ISSUES] == ["2026-11-13.yaml", "2026-11-20.yaml", "2026-11-27.yaml"]
    assert {path.parent for path in SAMPLE_ISSUES} == {FIXTURE_ISSUES_DIR}


def test_no_newsletter_variable_reaches_a_test():
    leaked = [name for name in os.environ if name.startswith("NEWSLETTER_") and name not in KEPT_VARIABLES]
    assert leaked == []
    environ = {"NEWSLETTER_DATABASE_URL": "x", "NEWSLETTER_TEST_POSTGRES_URL": "y", "PATH": "/bin"}
    assert clean_environment(environ) == {
        "NEWSLETTER_TEST_POSTGRES_URL": "y", "PATH": "/bin", "NEWSLETTER_CHECK_LINKS": "off"
    }


def _pytest(project: Path, env: dict[str, str], basetemp: Path, *args: str) -> tuple[str, set[str]]:
    """Run pytest on ``project``; its output and the ids of the tests that failed or errored."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", "--basetemp", str(basetemp),
         "-m", "not browser and not postgres", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    failed = set(re.findall(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", done.stdout, re.MULTILINE))
    assert done.returncode in (0, 1), output[-5000:]
    assert (done.returncode == 1) == bool(failed), output[-5000:]
    return output, failed


def test_a_broken_draft_in_issues_and_newsletter_variables_do_not_affect_the_suite(tmp_path: Path):
    """Run the suite on a copy of this project whose ``issues/`` holds an editor's broken draft, from
    a shell whose ``NEWSLETTER_*`` variables point at that folder and at a scratch database: every
    test must pass all the same, and nothing may be written to that database.

    If some test fails there, the suite runs again without the draft and the variables: only a test
    that fails just in the first run was affected (one failing in both is somebody else's bug, which
    the suite itself reports).
    """
    project = tmp_path / "project"
    shutil.copytree(ROOT, project, ignore=NOT_COPIED)
    draft = project / "issues" / "2026-12-04.yaml"
    draft.parent.mkdir(exist_ok=True)
    draft.write_text(BROKEN_DRAFT, encoding="utf-8")
    leaked_db = tmp_path / "leaked.db"
    env = {
        **clean_environment(),
        "NEWSLETTER_DATABASE_URL": f"sqlite:///{leaked_db}",
        "NEWSLETTER_PATHS_ISSUES": str(draft.parent),
        "NEWSLETTER_NEWSLETTER_NAME": "Leaked Weekly",
    }
    output, failed = _pytest(project, env, tmp_path / "poisoned", *NESTED)
    assert re.search(r"\b\d+ passed\b", output), output[-5000:]
    assert not leaked_db.exists(), "a test wrote to the database NEWSLETTER_DATABASE_URL named"
    if failed:
        draft.unlink()
        _, failed_anyway = _pytest(project, clean_environment(), tmp_path / "clean", *NESTED)
        affected = sorted(failed - failed_anyway)
        assert not affected, f"fail only with a draft in issues/ and NEWSLETTER_* set: {affected}\n{output}"
