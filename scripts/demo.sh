#!/usr/bin/env bash
# One command on a fresh machine: install into .venv, then run the main job on embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/newsletter demo "$@"
