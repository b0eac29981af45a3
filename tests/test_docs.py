"""Documentation that is checked: the CLI reference matches the code, the README names the setup."""

from __future__ import annotations

from pathlib import Path

from newsletter.cli.reference import DOC, render_reference

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_is_current():
    assert DOC.read_text(encoding="utf-8") == render_reference(), (
        "docs/cli.md is stale: run `python -m newsletter.cli.reference`"
    )


def test_readme_names_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/demo.sh" in readme and "bash scripts/test.sh" in readme
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_every_dependency_is_explained_in_the_readme():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    readme = (ROOT / "README.md").read_text().lower()
    for requirement in project["dependencies"]:
        name = requirement.split(">")[0].split("[")[0].split("=")[0].strip().lower()
        assert name in readme, f"README does not say why {name} is a dependency"
