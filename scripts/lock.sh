#!/usr/bin/env bash
# Pin the dependency set that scripts/setup.sh installs and CI tests, with uv:
#   requirements-test.lock  the project's dependencies, its test extras and its build backend
#   requirements.lock       the same pins without the test extras (what scripts/demo.sh installs)
# Every release is pinned with the hash of each of its files, for every platform and Python >= 3.11,
# and no download address is written. Existing pins are kept unless a change in pyproject.toml needs
# another release, so run this after editing the dependencies in pyproject.toml. To move pins on:
#   bash scripts/lock.sh --upgrade                   every pin to the newest release the ranges allow
#   bash scripts/lock.sh --upgrade-package jinja2    just that one
# Then run scripts/test.sh and commit the lock files together with pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/uv ]; then bash scripts/setup.sh; fi
uv=.venv/bin/uv
compile=("$uv" pip compile --quiet --universal --python-version 3.11 --generate-hashes
         --custom-compile-command "bash scripts/lock.sh")
# The build backend (build-system.requires) is pinned too: setup.sh builds the project with it.
build_requires=$(.venv/bin/python -c '
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))')
printf '%s\n' "$build_requires" | "${compile[@]}" pyproject.toml - --extra test -o requirements-test.lock "$@"
# The runtime set is constrained to the test set's pins, so both files always agree.
printf '%s\n' "$build_requires" | "${compile[@]}" pyproject.toml - -c requirements-test.lock -o requirements.lock
echo "wrote requirements-test.lock and requirements.lock"
