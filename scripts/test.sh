#!/usr/bin/env bash
# One command on a fresh machine: install the project with its test extras, the browser and the
# database the tests need, then lint, type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
bash scripts/install-chromium.sh
bash scripts/install-dovecot.sh
bash scripts/start-postgres.sh
.venv/bin/ruff check newsletter migrations tests benchmarks setup.py
.venv/bin/mypy
# pytest exits 5 when it collected no tests; that is a failure here, as is any other non-zero code.
exec .venv/bin/python -m pytest "$@"
