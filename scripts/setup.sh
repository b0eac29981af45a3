#!/usr/bin/env bash
# Create .venv and install the pinned dependency set with uv, then the project itself (editable).
# Without options: requirements.lock; with --test: requirements-test.lock (plus the test extras).
# Every file is checked against the hash in the lock, so every machine and CI get the same releases.
# Safe to rerun: what is installed already is kept (an install, not a sync, so .venv keeps pip and
# uv). The lock files are written by scripts/lock.sh. uv's output goes to .venv/install.log and is
# shown only if the install fails.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9 # the installer is pinned too
PYTHON=${PYTHON:-python3}
lock=requirements.lock
if [ "${1:-}" = "--test" ]; then lock=requirements-test.lock; fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
log=.venv/install.log
install() {
  local reinstall=()
  if [ "$(.venv/bin/uv --version 2>/dev/null | cut -d' ' -f2)" != "$UV_VERSION" ]; then
    .venv/bin/python -m pip install --disable-pip-version-check "uv==$UV_VERSION"
    # A .venv set up before uv (or by another uv) is reinstalled once from the lock, which also puts
    # every locked file in uv's cache: tests/test_install.py installs from there, offline.
    reinstall=(--reinstall)
  fi
  # uv pip installs into the environment --python names: this project's .venv, never another one.
  .venv/bin/uv pip install --python .venv/bin/python --require-hashes "${reinstall[@]}" -r "$lock"
  # The build backend comes from the lock as well (setuptools), so no unpinned build environment.
  .venv/bin/uv pip install --python .venv/bin/python --no-deps --no-build-isolation -e .
}
if ! install >"$log" 2>&1; then
  cat "$log" >&2
  echo "installing the project failed (log above, also in $log)" >&2
  exit 1
fi
.venv/bin/python -c "import newsletter" # fail loudly if the install did not work
# The sign-up form's anti-robot widget, served from our own origin (never a CDN).
bash scripts/install-altcha.sh || echo "setup: the ALTCHA widget is not installed; /subscribe works without it only for clients that solve the challenge themselves" >&2
