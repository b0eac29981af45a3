#!/usr/bin/env bash
# Install the ALTCHA widget (npm package altcha, pinned with its integrity hash in
# scripts/altcha/package-lock.json) and copy its built script to newsletter/web/static/altcha.min.js,
# which `newsletter serve` serves from our own origin as /static/altcha.min.js: the sign-up pages
# never load a script from a CDN. Called by scripts/setup.sh; safe to rerun. Needs npm.
set -euo pipefail
cd "$(dirname "$0")/.."
target=newsletter/web/static/altcha.min.js
if ! command -v npm >/dev/null 2>&1; then
  echo "install-altcha: npm not found; the sign-up form's anti-robot widget ($target) is not installed" >&2
  exit 1
fi
work=scripts/altcha
npm ci --prefix "$work" --no-audit --no-fund --ignore-scripts --silent
mkdir -p "$(dirname "$target")"
cp "$work/node_modules/altcha/dist/main/altcha.min.js" "$target"
rm -rf "$work/node_modules"
