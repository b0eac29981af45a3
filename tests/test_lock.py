"""The lock files pin what CI tests: every dependency of pyproject.toml, at a release its range
allows, hash-checked, the same release in both files, and set-up installs from them."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import ROOT

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)( ; [^\\\n]+)?", re.MULTILINE)


def pins(name: str) -> dict[str, set[str]]:
    """Each package's pinned releases. The lock is universal: a package may be pinned once per
    range of Python versions (numpy's newest releases need a newer Python than 3.11), but only
    with environment markers that say which pin applies where."""
    text = (ROOT / name).read_text(encoding="utf-8")
    found: dict[str, set[str]] = {}
    markers: dict[str, list[str]] = {}
    for package, version, marker in PIN.findall(text):
        found.setdefault(canonicalize_name(package), set()).add(version)
        markers.setdefault(canonicalize_name(package), []).append(marker)
    for package, seen in markers.items():
        if len(seen) > 1:
            assert all(seen) and len(set(seen)) == len(seen), f"{name} pins {package} twice for one Python"
    return found


def requirements() -> tuple[list[Requirement], list[Requirement]]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    runtime = [Requirement(r) for r in pyproject["project"]["dependencies"]]
    runtime += [Requirement(r) for r in pyproject["build-system"]["requires"]]
    test = [Requirement(r) for r in pyproject["project"]["optional-dependencies"]["test"]]
    return runtime, test


def test_every_dependency_is_locked_at_an_allowed_release():
    runtime, test = requirements()
    for lock, wanted in (("requirements.lock", runtime), ("requirements-test.lock", runtime + test)):
        pinned = pins(lock)
        for requirement in wanted:
            name = canonicalize_name(requirement.name)
            assert name in pinned, f"{requirement} is not in {lock}: run `bash scripts/lock.sh`"
            for version in pinned[name]:
                assert requirement.specifier.contains(version, prereleases=True), (
                    f"{lock} pins {name}=={version}, outside {requirement}: run `bash scripts/lock.sh`"
                )


def test_both_lock_files_agree_and_check_hashes():
    runtime, test = pins("requirements.lock"), pins("requirements-test.lock")
    assert {name: test.get(name) for name in runtime} == runtime
    for lock in ("requirements.lock", "requirements-test.lock"):
        text = (ROOT / lock).read_text(encoding="utf-8")
        assert text.count("==") <= text.count("--hash=sha256:"), f"{lock}: a pin without a hash"
        assert "://" not in text, f"{lock} names a download address"


def test_setup_installs_from_the_lock_files():
    setup = (ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8")
    assert "--require-hashes" in setup
    assert "requirements.lock" in setup and "requirements-test.lock" in setup
    assert re.search(r"^UV_VERSION=\d+\.\d+\.\d+", setup, re.MULTILINE), "uv must be pinned"
