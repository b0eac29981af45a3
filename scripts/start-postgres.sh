#!/usr/bin/env bash
# The store tests run against a real PostgreSQL on 127.0.0.1:5432; start the local cluster if it
# is installed and stopped. With NEWSLETTER_TEST_POSTGRES_URL set, that server is used instead.
set -uo pipefail
if [ -n "${NEWSLETTER_TEST_POSTGRES_URL:-}" ]; then exit 0; fi
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then exit 0; fi
if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 1; done
fi
echo "PostgreSQL is not reachable on 127.0.0.1:5432; PostgreSQL tests will be skipped (a failure in CI)" >&2
